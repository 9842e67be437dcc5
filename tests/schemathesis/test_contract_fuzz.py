"""schemathesis against a live ``libervia serve``, once per role, with every check, stateful where links exist.

The budget is fixed (``MAX_EXAMPLES`` per operation, deterministic generation: the same cases every run). The
served document is narrowed to the role's own tenant before the run: which tenant ids are valid depends on the
credential (a tenant key names its tenant; any other tenant is TENANT_CONFLICT or INVALID_TOKEN), which no OpenAPI
schema can say, so each role's run sees the tenant parameters as the one value its credential makes valid, and
schemathesis' negative cases (any other value) must be refused.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libervia.openapi import TENANT_PARAMETER
from tests.gateway_process import GatewayProcess

MAX_EXAMPLES = 8
# One worker: with several, hypothesis parses lambda sources from threads, and CPython 3.11's ast.parse is not
# thread-safe ("SystemError: AST constructor recursion depth mismatch", seen here with two workers).
TENANTS = {"global_admin": "st-admin", "tenant_admin": "st-owner", "public": "st-public"}

CONFIG = """
[checks]
# every check (schemathesis' default), including response-schema and status-code conformance
enabled = true

[checks.positive_data_acceptance]
# A schema-valid request may still break a domain rule (422), exceed a quota (403 QUOTA_EXCEEDED: the fuzzer PATCHes
# quotas too) or meet a missing or changed resource (404, 409): none of these is a 400. /admin/ui redirects (308).
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]

[generation]
# Unknown query parameters and extra headers are accepted on purpose (v1 ignored them): not negative data.
allow-extra-parameters = false

[[operations]]
# fromSeq <= toSeq and fromTs <= toTs are cross-parameter rules no parameter schema can state.
include-operation-id = ["audit_export", "audit_replay"]
checks.positive_data_acceptance.enabled = false
"""


def narrowed(document: dict[str, Any], tenant: str, key_role: bool) -> dict[str, Any]:
    """The document with every tenant parameter (path or X-Tenant-Id) reduced to ``tenant``. A tenant key names
    its tenant, so for a key role ``X-Tenant-Id`` stays optional (any other value must still be refused)."""
    result = copy.deepcopy(document)
    for operations in result["paths"].values():
        for operation in operations.values():
            kept = []
            for parameter in operation.get("parameters", []):
                if parameter.get(TENANT_PARAMETER):
                    optional = parameter["in"] == "header" and key_role
                    # A blank X-Tenant-Id counts as no header (the key still names the tenant).
                    parameter["schema"] = {"type": "string", "enum": [tenant, ""] if optional else [tenant]}
                    parameter["required"] = not optional
                kept.append(parameter)
            if "parameters" in operation:
                operation["parameters"] = kept
    return result


@pytest.fixture(scope="module")
def live_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, dict[str, str]]]:
    import asyncio

    base = tmp_path_factory.mktemp("schemathesis")
    gateway = GatewayProcess(base / "data").start()

    async def provision() -> dict[str, str]:
        tokens = {"global_admin": gateway.admin_token}
        for tenant in TENANTS.values():
            await gateway.create_tenant(tenant, quotas={"rateLimitRpm": 0})
        tokens["tenant_admin"] = await gateway.create_key(TENANTS["tenant_admin"], "tenant_admin")
        tokens["public"] = await gateway.create_key(TENANTS["public"], "public")
        return tokens

    try:
        yield gateway, asyncio.run(provision())
    finally:
        gateway.stop()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("role", list(TENANTS))
def test_schemathesis_finds_nothing(live_gateway: tuple[GatewayProcess, dict[str, str]], role: str,
                                    tmp_path: Path) -> None:
    gateway, tokens = live_gateway
    import urllib.request

    with urllib.request.urlopen(f"{gateway.url}/openapi.json", timeout=10) as response:
        document = json.loads(response.read())
    schema_file = tmp_path / "openapi.json"
    schema_file.write_text(json.dumps(narrowed(document, TENANTS[role], key_role=role != "global_admin")))
    config = tmp_path / "schemathesis.toml"
    # The credential goes in the config file, never on the command line (where `ps` would show it).
    config.touch(mode=0o600)
    config.write_text(f'headers = {{ Authorization = "Bearer {tokens[role]}" }}\n' + CONFIG)
    st = Path(sys.executable).with_name("st")
    command = [str(st), "--config-file", str(config), "run", str(schema_file), "--url", gateway.url,
               "--max-examples", str(MAX_EXAMPLES),
               "--generation-deterministic", "--workers", "1", "--no-color", "--continue-on-failure",
               "--report", "junit", "--report-dir", str(tmp_path / "report")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")}
    env["SCHEMATHESIS_HOOKS"] = str(Path(__file__).with_name("hooks.py"))
    result = subprocess.run(command, capture_output=True, text=True, timeout=540, cwd=tmp_path, env=env)
    summary = result.stdout[result.stdout.find("= SUMMARY"):] if "= SUMMARY" in result.stdout else result.stdout
    print(f"schemathesis as {role}:\n{summary}")
    assert result.returncode == 0, f"schemathesis as {role}:\n{result.stdout[-20000:]}\n{result.stderr[-3000:]}"
    assert "Tested: " in summary and "Stateful" in summary, summary
    assert gateway.proc is not None and gateway.proc.poll() is None, "the gateway died under fuzzing"
    output = gateway.log_text() + gateway.stderr()
    for secret in (*tokens.values(), gateway.env["LIBERVIA_AUTH_PEPPER"]):
        assert secret not in output, f"a credential reached the gateway's output while fuzzing as {role}"
