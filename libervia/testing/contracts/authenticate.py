"""The contract of ``libervia_authenticate``: the tri-state rule, through the real pipeline.

Subclass :class:`AuthenticatorContract`, put your plugin in ``contract_plugins`` (and its settings in
``contract_settings``) and provide:

* ``accepted_credential``: an async callable ``(harness) -> (token, expected)`` giving a token your plugin
  accepts and the principal it must yield, ``expected = {"role": "public", "tenant_id": "acme"}``; it may create
  the tenant through ``harness.admin`` first;
* ``rejected_token`` (optional): an async callable ``(harness) -> token`` your plugin rejects outright (raises
  :class:`libervia.errors.AuthError`), or ``None`` when it has no such token.

What it checks:

* your token authenticates as the expected principal on a route of the principal's access group;
* tokens that are not yours (garbage, other formats, another plugin's credentials) fall through: the gateway's
  own admin token and tenant keys keep working with your plugin installed, and garbage ends in 401
  ``INVALID_TOKEN``, never in a 5xx;
* a rejected token is answered 401 with the JSON error body, and no other plugin accepts it afterwards;
* no token appears in anything the gateway logs.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from loguru import logger

from libervia import context, hookimpl
from libervia.jsonlog import LineWriter, access_log
from libervia.responses import json_response
from libervia.routing import Access, Route
from libervia.testing.contracts.harness import GatewayContract
from libervia.testing.gateway import GatewayHarness

AcceptedCredential = Callable[[GatewayHarness], Awaitable[tuple[str, dict[str, Any]]]]
RejectedToken = Callable[[GatewayHarness], Awaitable[str]]

TENANT_PROBE = "/api/v1/contract/whoami"
ADMIN_PROBE = "/admin/contract/whoami"
TENANT_READ_PROBE = "/admin/contract/tenants/{id}/whoami"
FOREIGN_TOKENS = ("", "x", "not-a-token", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "Basic Zm9vOmJhcg==",
                  "lbv_" + "A" * 43, "k" * 4096, "\u00e9l\u00e8ve")


async def whoami(request: web.Request) -> web.Response:
    principal = context.principal(request)
    return json_response({"role": principal.role.value, "tenant_id": principal.tenant_id,
                          "key_id": principal.key_id})


class WhoAmI:
    """Routes that answer with the principal the pipeline established, one per access group."""

    PLUGIN_NAME = "contract_whoami"

    @hookimpl
    def libervia_routes(self) -> list[Route]:
        return [Route("GET", TENANT_PROBE, whoami, Access.TENANT_API),
                Route("GET", ADMIN_PROBE, whoami, Access.GLOBAL_ADMIN),
                Route("GET", TENANT_READ_PROBE, whoami, Access.TENANT_READ, tenant_param="id")]


def probe_for(expected: dict[str, Any]) -> str:
    if expected.get("role") == "global_admin":
        return ADMIN_PROBE
    if expected.get("role") == "tenant_admin":
        return TENANT_READ_PROBE.format(id=expected["tenant_id"])
    return TENANT_PROBE


class AuthenticatorContract(GatewayContract):
    @pytest.fixture
    def rejected_token(self) -> RejectedToken | None:
        return None

    @pytest.fixture
    def probed_plugins(self, contract_plugins: list[object]) -> list[object]:
        return [*contract_plugins, WhoAmI()]

    @pytest.fixture
    def logged(self) -> Any:
        """What the gateway has written so far, as one text: loguru's lines (with their extra fields) and the
        access log's, which has a writer of its own."""
        lines: list[str] = []
        sink = logger.add(lambda message: lines.append(str(message) + repr(message.record["extra"])))
        access_lines = io.StringIO()
        previous, access_log.writer = access_log.writer, LineWriter(access_lines)

        def text() -> str:
            access_log.flush()
            return "\n".join([*lines, access_lines.getvalue()])

        yield text
        access_log.writer = previous
        logger.remove(sink)

    @pytest_asyncio.fixture
    async def gateway(self, tmp_path: Any, contract_settings: dict[str, Any], probed_plugins: list[object],
                      logged: Callable[[], str]) -> Any:
        async with GatewayHarness(tmp_path / "auth-contract", contract_settings, probed_plugins) as harness:
            yield harness

    async def test_accepts_its_token_as_the_expected_principal(self, gateway: GatewayHarness,
                                                               accepted_credential: AcceptedCredential) -> None:
        token, expected = await accepted_credential(gateway)
        response = await gateway.as_role(token).get(probe_for(expected))
        assert response.status == 200, await response.text()
        answered = await response.json()
        for key, value in expected.items():
            assert answered[key] == value, key

    async def test_the_gateway_credentials_still_work_beside_it(self, gateway: GatewayHarness) -> None:
        admin = await gateway.admin.get(ADMIN_PROBE)
        assert admin.status == 200 and (await admin.json())["role"] == "global_admin"
        tenant = await gateway.create_tenant()
        public = await tenant.public.get(TENANT_PROBE)
        assert public.status == 200 and (await public.json())["tenant_id"] == tenant.tenant_id

    @pytest.mark.parametrize("token", FOREIGN_TOKENS)
    async def test_garbage_is_not_mine_and_never_a_server_error(self, gateway: GatewayHarness, token: str) -> None:
        response = await gateway.as_role(token).get(TENANT_PROBE) if token.isascii() else \
            await gateway.anonymous.get(TENANT_PROBE, headers={"Authorization": "Bearer " + token})
        assert response.status == 401, await response.text()
        assert (await response.json())["code"] in ("INVALID_TOKEN", "MISSING_TOKEN")

    async def test_a_rejected_token_is_refused_outright(self, gateway: GatewayHarness,
                                                        rejected_token: RejectedToken | None) -> None:
        if rejected_token is None:
            pytest.skip("this authenticator rejects no token outright")
        token = await rejected_token(gateway)
        for probe in (TENANT_PROBE, ADMIN_PROBE):
            response = await gateway.as_role(token).get(probe)
            assert response.status == 401
            body = await response.json()
            assert body["code"] and body["message"]

    async def test_no_token_reaches_the_log(self, gateway: GatewayHarness, accepted_credential: AcceptedCredential,
                                            logged: Callable[[], str]) -> None:
        token, expected = await accepted_credential(gateway)
        await gateway.as_role(token).get(probe_for(expected))
        await gateway.as_role(token + "tampered").get(probe_for(expected))
        text = logged()
        assert probe_for(expected) in text   # the requests were logged: the check below reads real lines
        assert token not in text
