"""Checks on everything a gateway process wrote: each line one JSON object, no secret anywhere."""

from __future__ import annotations

import json

from tests.gateway_process import PEPPER, GatewayProcess


def assert_clean_output(gateway: GatewayProcess, secrets: list[str]) -> list[dict]:
    """Every stdout and stderr line of ``gateway`` is one JSON object and no secret appears; the parsed lines."""
    lines = []
    for name, text in (("stdout", gateway.log_text()), ("stderr", gateway.stderr())):
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                parsed = json.loads(line)
            except ValueError:
                raise AssertionError(f"{name} line is not JSON: {line[:200]!r}") from None
            assert isinstance(parsed, dict), line[:200]
            lines.append(parsed)
        for secret in [*secrets, PEPPER, gateway.admin_token]:
            assert secret not in text, f"a secret reached {name}"
    return lines
