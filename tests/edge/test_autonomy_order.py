"""10.11: DOMAIN.md's order puts MODO_SOLICITADO_SEM_MANDATO before REGRA_2_MANDATO_OBRIGATORIO."""

from __future__ import annotations

from typing import Any

from tests.core import bodies
from tests.gateway_process import GatewayProcess


async def test_a_vivencia_mode_without_a_mandate_is_modo_solicitado_sem_mandato(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory()
    await gateway.create_tenant("auto")
    key = await gateway.create_key("auto")
    for modo in ("VIVENCIA_ASSISTIDA", "VIVENCIA_AUTONOMA"):
        status, _, body = await gateway.request("POST", "/api/v1/autonomia/avaliar", key,
                                                json=bodies.avaliacao("no-mandate", modo=modo))
        assert status == 200, body
        assert body["permitido"] is False and body["regra"] == "MODO_SOLICITADO_SEM_MANDATO", body
    status, _, body = await gateway.request("POST", "/api/v1/autonomia/avaliar", key,
                                            json=bodies.avaliacao("no-mandate", modo="ENSINO"))
    assert body["regra"] == "REGRA_1_ENSINO_SEMPRE_BLOQUEIA"
