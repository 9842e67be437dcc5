"""The one rule for which names hold secrets: settings keys, log fields, environment variables.

``libervia plugins`` masks the settings it prints, the JSON log redacts fields, and evidence collection scrubs
environment variables by this predicate, so a name one of them hides is hidden by all of them.
"""

from __future__ import annotations

import functools
import re

SECRET_NAME_WORDS: tuple[str, ...] = (
    "token", "pepper", "secret", "password", "passwd", "credential", "private_key", "checkpoint_key", "api_key",
    "authorization", "dsn",
)


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """True when ``name`` (any case) contains one of :data:`SECRET_NAME_WORDS`."""
    lowered = name.lower()
    return any(word in lowered for word in SECRET_NAME_WORDS)


# A bearer credential inside free text (a log message, a traceback, a command line in `ps` output).
BEARER_CREDENTIAL = re.compile(r"(?i)bearer\s+[^\s\"',;]+")
