"""DOMAIN.md: episode transitions CRIADO → DECIDIDO → EM_OBSERVACAO → ENCERRADO, each stamped."""

from __future__ import annotations

import pytest

from libervia.core import TenantCore
from libervia.errors import ApiError
from tests.core.conftest import all_entries, decided


async def test_observe_then_close_stamps_each_transition(core: TenantCore) -> None:
    episodio_id = (await decided(core))["episodio_id"]
    observed = await core.observe(episodio_id, actor="k")
    assert observed["estado"] == "EM_OBSERVACAO" and observed["observacao_iniciada_em"]
    closed = await core.close_episode(episodio_id, actor="k")
    assert closed["estado"] == "ENCERRADO" and closed["encerrado_em"]
    assert closed["criado_em"] <= closed["decidido_em"] <= closed["observacao_iniciada_em"] <= closed["encerrado_em"]
    situacao = core.state.situacoes[closed["situacao_id"]]
    assert situacao.status == "ENCERRADA"
    assert closed["ultimo_evento"] == "SITUACAO_STATUS_ALTERADO" and closed["total_eventos"] == 10


@pytest.mark.parametrize("steps", [["close"], ["observe", "observe"], ["observe", "close", "close"],
                                   ["observe", "close", "observe"]])
async def test_transitions_out_of_order_are_invalid_state_and_write_nothing(core: TenantCore,
                                                                            steps: list[str]) -> None:
    episodio_id = (await decided(core))["episodio_id"]
    *allowed, refused = steps
    for step in allowed:
        await (core.observe if step == "observe" else core.close_episode)(episodio_id, actor="k")
    before = core.state.seq
    with pytest.raises(ApiError) as caught:
        await (core.observe if refused == "observe" else core.close_episode)(episodio_id, actor="k")
    assert caught.value.status == 409 and caught.value.code == "INVALID_STATE"
    assert core.state.seq == before == len(await all_entries(core))


async def test_unknown_episode_is_404(core: TenantCore) -> None:
    for call in (core.episode("epi_nope"), core.observe("epi_nope", actor="k")):
        with pytest.raises(ApiError) as caught:
            await call
        assert caught.value.status == 404 and caught.value.code == "EPISODE_NOT_FOUND"
