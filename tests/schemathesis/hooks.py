"""schemathesis hooks for the contract fuzz (loaded through ``SCHEMATHESIS_HOOKS``).

The gateway keeps every integer of a body exactly or refuses it: integers outside the signed 64-bit range are
400 ``INVALID_JSON`` (``libervia/strict_json.py``; ``tests/edge/test_ambiguous_input.py`` proves the refusal).
No JSON Schema can say that of free-form values such as ``metadata``, so generated bodies holding such an integer
are left out rather than counted as schema-valid data the API refused.
"""

from __future__ import annotations

from typing import Any

import schemathesis

INT64 = range(-(2**63), 2**63)


def _within_int64(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return value in INT64
    if isinstance(value, dict):
        return all(_within_int64(item) for item in value.values())
    if isinstance(value, list):
        return all(_within_int64(item) for item in value)
    return True


@schemathesis.hook
def filter_body(context: Any, body: Any) -> bool:
    return _within_int64(body)
