"""Evidence files never carry a bearer credential, even one that no setting names (another process's command
line in ``ps auxww`` output, say)."""

from __future__ import annotations

import secrets

from libervia.ops.evidence import scrub


def test_a_bearer_credential_in_any_collected_text_is_redacted() -> None:
    key = secrets.token_urlsafe(32)
    ps = f"root 42 0.0 curl -s -H 'Authorization: Bearer {key}' http://127.0.0.1:3000/admin/tenants\n".encode()
    scrubbed = scrub(ps, secrets=[])
    assert key.encode() not in scrubbed
    assert b"Authorization: Bearer <redacted>" in scrubbed and b"http://127.0.0.1:3000/admin/tenants" in scrubbed


def test_configured_secret_values_are_redacted_wherever_they_stand() -> None:
    pepper = secrets.token_hex(32)
    assert scrub(f"LIBERVIA_AUTH_PEPPER={pepper} python -m x".encode(), [pepper]) == \
        b"LIBERVIA_AUTH_PEPPER=<redacted> python -m x"
