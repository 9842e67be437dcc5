"""The console's event log view (``GET /admin/query/eventlog``) pages what the logs hold without holding them.

It gathered every entry of every tenant's log into one list to sort and slice it: one request held the whole
history of the gateway in memory. Now one tenant's page comes from its Core (counters, and the log up to the
page) and the gateway-wide page from each log's first ``offset + limit`` matches; what both answer is checked here
against the logs read whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from libervia.testing import GatewayHarness
from tests.core import bodies


async def _whole_logs(gateway: GatewayHarness, tenants: list[str]) -> list[dict[str, Any]]:
    entries = []
    for tenant in tenants:
        log = await gateway.gateway.runtime.event_log(tenant)
        entries += [{**entry, "timestamp": entry["ts"]} async for entry in log.entries()]
    return entries


def _matching(entries: list[dict[str, Any]], event_type: str | None, entity_type: str | None
              ) -> list[dict[str, Any]]:
    return [e for e in entries if (event_type is None or e["evento"] == event_type)
            and (entity_type is None or e["entidade"] == entity_type)]


async def test_every_page_of_the_panel_event_log_answers_what_the_logs_hold(tmp_path: Path) -> None:
    async with GatewayHarness(tmp_path / "data", {}) as gateway:
        tenants = ["painel-a", "painel-b", "painel-c"]
        for number, tenant in enumerate(tenants):
            access = await gateway.create_tenant(tenant)
            for _ in range(number + 1):
                assert (await access.public.post("/api/v1/decisoes", bodies.decisao())).status == 201
        # A deleted tenant's log stays readable by the operators.
        assert (await gateway.admin.delete("/admin/tenants/painel-c")).status == 200
        whole = await _whole_logs(gateway, tenants)
        filters: list[tuple[str | None, str | None]] = [
            (None, None), ("CONTRATO_EMITIDO", None), (None, "EpisodioDecisao"), ("KEY_CREATED", "ApiKey"),
            ("NUNCA", None)]
        pages = [(50, 0), (1, 0), (3, 2), (200, 0), (7, 30), (5, 10**6)]
        checked = 0
        for event_type, entity_type in filters:
            wanted = "".join(f"&{name}={value}" for name, value in (("eventType", event_type),
                                                                   ("entityType", entity_type)) if value)
            for limit, offset in pages:
                everyone = _matching(sorted(whole, key=lambda e: (e["ts"], e["tenant"], e["seq"])),
                                     event_type, entity_type)
                response = await gateway.admin.get(f"/admin/query/eventlog?limit={limit}&offset={offset}{wanted}")
                body = await response.json()
                assert response.status == 200, body
                assert (body["events"], body["total"]) == (everyone[offset:offset + limit], len(everyone))
                for tenant in tenants:
                    own = _matching([e for e in whole if e["tenant"] == tenant], event_type, entity_type)
                    response = await gateway.admin.get(
                        f"/admin/query/eventlog?tenantId={tenant}&limit={limit}&offset={offset}{wanted}")
                    body = await response.json()
                    assert response.status == 200, body
                    assert (body["events"], body["total"]) == (own[offset:offset + limit], len(own))
                    assert (body["limit"], body["offset"]) == (limit, offset)
                    checked += 1
        assert checked == len(filters) * len(pages) * len(tenants)
