"""Routes declare their schemas as a built-in name, a dict or a package resource, validated the same way.

Driven through the in-process gateway of ``libervia.testing`` (a real aiohttp server on a free port).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest
from aiohttp import web

from libervia import context, hookimpl
from libervia.errors import StartupError
from libervia.responses import json_response
from libervia.routing import Access, Route, route_schema, schema_resource
from libervia.schemas import load_schema
from libervia.testing import GatewayHarness

BUILTIN_QUERY = "requests/query_page"
DICT_QUERY = load_schema(BUILTIN_QUERY)
DICT_BODY: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["name"],
    "properties": {"name": {"type": "string", "maxLength": 5}, "shout": {"type": "boolean", "default": False}},
}


async def echo(request: web.Request) -> web.Response:
    state = context.state(request)
    return json_response({"query": state.query, "body": state.body})


class SchemaRoutes:
    PLUGIN_NAME = "schema_routes"

    @hookimpl
    def libervia_routes(self) -> list[Route]:
        resource = resources.files("libervia_schemas").joinpath(f"{BUILTIN_QUERY}.schema.json")
        return [
            Route("GET", "/api/v1/kit/builtin", echo, Access.TENANT_API, query_schema=BUILTIN_QUERY),
            Route("GET", "/api/v1/kit/dict", echo, Access.TENANT_API, query_schema=route_schema(DICT_QUERY)),
            Route("GET", "/api/v1/kit/resource", echo, Access.TENANT_API, query_schema=resource),  # type: ignore[arg-type]
            Route("POST", "/api/v1/kit/body", echo, Access.TENANT_API, body_schema=DICT_BODY),  # type: ignore[arg-type]
        ]


@pytest.fixture
def libervia_plugins() -> list[object]:
    return [SchemaRoutes()]


@pytest.mark.parametrize("query", ["", "?limit=5", "?limit=0", "?limit=abc", "?offset=-1", "?limit=99999999"])
async def test_dict_and_resource_query_schemas_answer_like_the_builtin(libervia_tenant: Any, query: str) -> None:
    answers = []
    for form in ("builtin", "dict", "resource"):
        response = await libervia_tenant.public.get(f"/api/v1/kit/{form}{query}")
        body = await response.json()
        body.pop("request_id", None)
        answers.append((response.status, body))
    assert answers[0][0] < 500
    assert answers[1] == answers[0] and answers[2] == answers[0]


async def test_dict_query_schema_fills_defaults_and_coerces(libervia_tenant: Any) -> None:
    response = await libervia_tenant.public.get("/api/v1/kit/dict?limit=7")
    assert response.status == 200
    query = (await response.json())["query"]
    assert query["limit"] == 7
    defaults = {k: v["default"] for k, v in DICT_QUERY["properties"].items() if "default" in v}
    for key, value in defaults.items():
        if key != "limit":
            assert query[key] == value


async def test_dict_body_schema_errors_and_defaults(libervia_tenant: Any) -> None:
    ok = await libervia_tenant.public.post("/api/v1/kit/body", {"name": "ana"})
    assert ok.status == 200 and (await ok.json())["body"] == {"name": "ana", "shout": False}
    bad = await libervia_tenant.public.post("/api/v1/kit/body", {"name": "too long", "extra": 1})
    assert bad.status == 400
    error = await bad.json()
    assert error["code"] == "VALIDATION_ERROR"
    assert {d["path"] for d in error["details"]} == {"$", "$.name"}
    nested = await libervia_tenant.public.post("/api/v1/kit/body", data=b"[" * 100 + b"]" * 100,
                                               headers={"Content-Type": "application/json"})
    assert nested.status == 400


def test_resource_helper_and_bad_schemas_are_refused_at_route_construction(tmp_path: Any) -> None:
    assert schema_resource("libervia_schemas", f"{BUILTIN_QUERY}.schema.json") == DICT_QUERY
    assert route_schema(BUILTIN_QUERY) == BUILTIN_QUERY
    registered = route_schema(DICT_BODY)
    assert registered == route_schema(dict(DICT_BODY)) and load_schema(registered) == DICT_BODY
    assert registered != route_schema({**DICT_BODY, "title": "other"})
    with pytest.raises(StartupError, match="query_schema: invalid JSON Schema"):
        Route("GET", "/x", echo, Access.OPEN, query_schema={"type": "nonsense"})  # type: ignore[arg-type]
    with pytest.raises(StartupError, match="no built-in schema"):
        Route("GET", "/x", echo, Access.OPEN, body_schema="requests/does_not_exist")
    broken = tmp_path / "broken.schema.json"
    broken.write_text("{not json")
    with pytest.raises(StartupError, match="cannot be read"):
        Route("GET", "/x", echo, Access.OPEN, body_schema=broken)  # type: ignore[arg-type]


async def test_a_bad_route_schema_stops_startup_naming_the_route(tmp_path: Any) -> None:
    class BadRoutes:
        PLUGIN_NAME = "bad_routes"

        @hookimpl
        def libervia_routes(self) -> list[Route]:
            return [Route("GET", "/api/v1/kit/bad", echo, Access.TENANT_API,
                          query_schema={"type": 3})]  # type: ignore[arg-type]

    harness = GatewayHarness(tmp_path / "data", plugins=[BadRoutes()])
    with pytest.raises(StartupError) as refused:
        await harness.start()
    assert refused.value.problems == [
        "plugins: route GET /api/v1/kit/bad: query_schema: invalid JSON Schema: "
        + refused.value.problems[0].split("invalid JSON Schema: ", 1)[1]]
    assert json.dumps(refused.value.problems)  # one plain line, printable as is


async def test_openapi_documents_dict_and_resource_schemas(libervia_gateway: GatewayHarness) -> None:
    from libervia.app import collect_routes
    from libervia.openapi import build_openapi

    document = build_openapi(libervia_gateway.gateway, collect_routes(libervia_gateway.gateway))
    for form in ("builtin", "dict", "resource"):
        names = [p["name"] for p in document["paths"][f"/api/v1/kit/{form}"]["get"]["parameters"]]
        assert {"limit", "offset"} <= set(names), form
    body = document["paths"]["/api/v1/kit/body"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    component = body["$ref"].rsplit("/", 1)[1]
    assert document["components"]["schemas"][component]["properties"]["name"] == {"type": "string", "maxLength": 5}
