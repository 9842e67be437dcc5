"""Request bodies for the Core's tests: valid by default, each field overridable."""

from __future__ import annotations

import copy
from typing import Any

from libervia.core.model import MINIMUM_OBSERVATIONS as OBSERVACAO_MINIMA


def situacao(**changes: Any) -> dict[str, Any]:
    body = {
        "dominio": "financeiro",
        "contexto": "renegociar o contrato do fornecedor",
        "objetivo": "reduzir custo sem perder qualidade",
        "incertezas": ["reação do fornecedor"],
        "alternativas": [{"descricao": "renegociar", "riscos_associados": ["atrito"]},
                         {"descricao": "trocar de fornecedor", "riscos_associados": ["transição"]}],
        "riscos": [{"descricao": "interrupção", "tipo": "OPERACIONAL", "reversibilidade": "REVERSIVEL"}],
        "urgencia": "MEDIA",
        "capacidade_absorcao": "ALTA",
        "consequencia_relevante": "custo anual do contrato",
        "possibilidade_aprendizado": True,
        "caso_uso_declarado": 2,
    }
    body.update(changes)
    return body


def protocolo(**changes: Any) -> dict[str, Any]:
    body = {
        "criterios_minimos": ["custo menor que o atual"],
        "riscos_considerados": ["interrupção"],
        "limites_definidos": [{"tipo": "FINANCEIRO", "descricao": "teto", "valor": 100000}],
        "perfil_risco": "MODERADO",
        "alternativas_avaliadas": ["renegociar", "trocar de fornecedor"],
        "alternativa_escolhida": "renegociar",
    }
    body.update(changes)
    return body


def decisao(situacao_changes: dict[str, Any] | None = None, **protocolo_changes: Any) -> dict[str, Any]:
    return {"situacao": situacao(**(situacao_changes or {})), "protocolo": protocolo(**protocolo_changes)}


def consequencia(contrato_id: str, **changes: Any) -> dict[str, Any]:
    body = {
        "contrato_id": contrato_id,
        "observada": {"descricao": "custo caiu 8%", "limites_respeitados": True, "condicoes_cumpridas": True},
        "percebida": {"descricao": "equipe satisfeita", "sinal": "POSITIVO"},
        "evidencias_minimas": list(OBSERVACAO_MINIMA),
    }
    body.update(copy.deepcopy(changes))
    return body


def mandato(agent_id: str = "agente-1", **changes: Any) -> dict[str, Any]:
    body = {
        "agentId": agent_id,
        "modo": "VIVENCIA_AUTONOMA",
        "politicas_permitidas": ["compras"],
        "perfil_risco_maximo": "MODERADO",
        "limites": [{"tipo": "FINANCEIRO", "valor": 5000}],
        "requer_humano_se": ["fornecedor novo"],
    }
    body.update(changes)
    return body


def avaliacao(agent_id: str = "agente-1", **changes: Any) -> dict[str, Any]:
    body = {"agentId": agent_id, "modo": "VIVENCIA_AUTONOMA", "politica": "compras", "perfil_risco": "MODERADO",
            "contexto": "reposição de estoque"}
    body.update(changes)
    return body
