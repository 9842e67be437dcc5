"""The compiled success path judges and completes documents exactly as ``jsonschema`` alone did.

The reference is the validator the gateway used before (``jsonschema`` with the defaults filler, every error,
sorted by path): for mutated valid bodies of every request schema, the compiled validator must accept the same
documents, fill the same defaults and report the same details.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from libervia.errors import ApiError
from libervia.schemas import MAX_DETAILS, MAX_MESSAGE_CHARS, _with_defaults, compile_schema, json_path, load_schema
from tests.core import bodies
from tests.core.test_core_http import _mutated

_Reference = _with_defaults(Draft202012Validator)


def reference(instance: Any, name: str) -> tuple[Any, list[dict[str, str]]]:
    """What the gateway answered before: the completed instance and every violation, sorted."""
    instance = copy.deepcopy(instance)
    errors = sorted(_Reference(load_schema(name)).iter_errors(instance), key=lambda e: (json_path(e), e.message))
    return instance, [{"path": json_path(e), "message": e.message} for e in errors]


def compiled(instance: Any, name: str) -> tuple[Any, list[dict[str, str]]]:
    instance = copy.deepcopy(instance)
    try:
        return compile_schema(name).validate(instance), []
    except ApiError as exc:
        assert exc.code == "VALIDATION_ERROR"
        return instance, exc.details


VALID = {
    "requests/core_decisao": bodies.decisao(),
    "requests/core_consequencia": bodies.consequencia("ctr_1"),
    "requests/mandate_grant": {k: v for k, v in bodies.mandato().items() if k not in ("limites", "requer_humano_se")},
    "requests/core_autonomia_avaliar": bodies.avaliacao(),
    "requests/query_page": {"limit": 10},
    "requests/tenant_list_query": {},
    "requests/key_rotate": {"role": "public"},
    "requests/tenant_create": {"id": "acme", "name": "Acme", "quotas": {"rateLimitRpm": 10}},
    "requests/audit_export": {"fromTs": "2026-01-01T00:00:00Z"},
    "requests/core_eventos_query": {"tipo": "DECISAO_REGISTRADA", "limit": 5},
    "requests/query_eventlog": {"tenantId": "abc-d"},
}


def agree(instance: Any, name: str) -> None:
    want_instance, want = reference(instance, name)
    got_instance, got = compiled(instance, name)
    if any(len(p["message"]) >= MAX_MESSAGE_CHARS for p in want) or len(want) > MAX_DETAILS:
        assert got and len(got) <= MAX_DETAILS + 1  # bounded; covered by the hostile-body test
        return
    assert got == want
    if not want:
        assert got_instance == want_instance


@pytest.mark.parametrize("name", sorted(VALID))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_compiled_validation_agrees_with_jsonschema(name: str, data: st.DataObject) -> None:
    agree(data.draw(_mutated(VALID[name])), name)


@pytest.mark.parametrize("instance, name", [
    ({"limit": 1.0}, "requests/query_page"),                    # 1.0 is an integer for both
    ({"limit": True}, "requests/query_page"),                   # a boolean is not
    ({"limit": 10**30}, "requests/query_page"),                 # beyond 64 bits: jsonschema decides
    ({"tenantId": "abc-d\n"}, "requests/query_eventlog"),       # Python's $ matches before a final newline
    ({"role": "public"}, "requests/key_rotate"),                # revokeOld filled with its default
    ({}, "requests/tenant_list_query"),                         # three defaults
    ({"fromTs": "2026-13-45T99:99:99Z"}, "requests/audit_export"),  # pattern only, no format assertion
])
def test_edges_between_the_two_libraries(instance: Any, name: str) -> None:
    agree(instance, name)


def test_every_request_schema_runs_compiled() -> None:
    from importlib import resources
    names = [f"requests/{p.name.removesuffix('.schema.json')}"
             for p in resources.files("libervia_schemas").joinpath("requests").iterdir() if p.name.endswith(".json")]
    assert names and all(compile_schema(name).compiled for name in names)


def test_defaults_under_a_combinator_are_left_to_jsonschema() -> None:
    schema = {"type": "object", "anyOf": [{"properties": {"a": {"default": 1}}}]}
    compiled_schema = compile_schema(schema)
    assert not compiled_schema.compiled
    assert compiled_schema.validate({}) == {"a": 1}


def test_a_schema_dict_is_compiled_once() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "default": 3}}}
    assert compile_schema(schema) is compile_schema(schema)
    assert compile_schema(schema).validate({}) == {"n": 3}
    with pytest.raises(ApiError) as caught:
        compile_schema(schema).validate({"n": "x"})
    assert caught.value.details == [{"path": "$.n", "message": "'x' is not of type 'integer'"}]
