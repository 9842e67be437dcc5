"""API keys: how tokens are made, and the only form in which they are stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_BYTES = 32


def new_token() -> str:
    """32 random bytes, URL-safe base64 without padding."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_key_id() -> str:
    return f"key_{secrets.token_hex(8)}"


def token_hash(pepper: str, token: str) -> str:
    """HMAC-SHA-256(pepper, token) as hex: what the registry keeps instead of the token."""
    return hmac.new(pepper.encode(), token.encode(), hashlib.sha256).hexdigest()
