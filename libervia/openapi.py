"""The OpenAPI 3.1 document, generated from the route table and the request schemas.

Routes are data (:class:`libervia.routing.Route`), so the document cannot drift from what the gateway serves:
``libervia openapi`` prints it, and a test keeps ``docs/openapi.json`` equal to it.
"""

from __future__ import annotations

import re
from typing import Any

from libervia import __version__
from libervia.gateway import Gateway
from libervia.routing import Access, Route
from libervia.schemas import load_schema

API_PREFIX = "/api/v1"
API_TENANT_PREFIX = "/api/v1/tenants/{tenant}"

ACCESS_TEXT = {
    Access.OPEN: "Open: no authentication.",
    Access.TENANT_API: "A tenant key (public or tenant_admin). Tenant from X-Tenant-Id, the path form or the key.",
    Access.TENANT_READ: "The tenant's own tenant_admin key (even while suspended) or the global admin token.",
    Access.TENANT_MANAGE: "The tenant's own tenant_admin key (tenant active) or the global admin token.",
    Access.GLOBAL_ADMIN: "The global admin token (ADMIN_TOKEN).",
}

ERROR_STATUSES = {
    "400": "Invalid input: INVALID_JSON, VALIDATION_ERROR (details name each JSON path), INVALID_TENANT_ID, "
           "MISSING_TENANT_ID, TENANT_CONFLICT",
    "401": "MISSING_TOKEN or INVALID_TOKEN",
    "403": "INSUFFICIENT_ROLE, TENANT_SUSPENDED, or HUMAN_ACTOR_REQUIRED",
    "404": "NOT_FOUND, TENANT_NOT_FOUND or the entity's own *_NOT_FOUND code",
    "409": "INVALID_STATE, TENANT_EXISTS, KEY_ALREADY_REVOKED, REVIEW_ALREADY_OPEN, or CONCURRENT_UPDATE (another "
           "gateway process changed the tenant at the same moment five times running: retry the request)",
    "413": "PAYLOAD_TOO_LARGE",
    "422": "A domain rule refused the request: PROTOCOL_REJECTED, CLOSED_LAYER_BLOCKED, EVIDENCE_MISSING, "
           "INVALID_FOLLOW_UP, NOTES_REQUIRED, REASON_REQUIRED, DOMAIN_RULE_VIOLATION",
    "429": "RATE_LIMITED (Retry-After, retry_after) or TOO_MANY_AUTH_FAILURES (Retry-After)",
    "503": "STORAGE_UNAVAILABLE (nothing was applied; retry later) or STORAGE_CORRUPT (the tenant's stored data "
           "cannot be read; operators: runbook PROC-007)",
    "507": "QUOTA_EXCEEDED: the tenant's maxEvents or maxStorageMB quota would be exceeded; nothing was written",
}

ERROR_BODY = {
    "type": "object",
    "required": ["error", "code", "message", "request_id"],
    "properties": {
        "error": {"type": "string"},
        "code": {"type": "string"},
        "message": {"type": "string"},
        "request_id": {"type": "string"},
        "details": {},
    },
}


def _component_name(schema_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", schema_name.split("/")[-1])


def _without_meta(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in ("$schema", "$id")}


def _operation(route: Route, path: str, components: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": (route.name or f"{route.method} {path}").replace(".", "_").replace(" ", "_")
        + ("_by_path" if path.startswith(API_TENANT_PREFIX) else ""),
        "description": ACCESS_TEXT[route.access],
        "tags": [path.split("/")[1] if path.count("/") > 1 else "health"],
        "responses": {"2XX": {"description": "Success"}},
    }
    if route.access is not Access.OPEN:
        operation["security"] = [{"bearer": []}]
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        operation["responses"].update(
            {status: {"description": text, "content": error} for status, text in ERROR_STATUSES.items()})
    parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in re.findall(r"{(\w+)}", path)]
    if route.access is Access.TENANT_API:
        parameters.append({"name": "X-Tenant-Id", "in": "header", "required": False, "schema": {"type": "string"}})
    if route.query_schema:
        query = load_schema(route.query_schema)
        for name, prop in query.get("properties", {}).items():
            parameters.append({"name": name, "in": "query", "required": name in query.get("required", []),
                               "schema": prop})
    if parameters:
        operation["parameters"] = parameters
    if route.body_schema:
        component = _component_name(route.body_schema)
        components[component] = _without_meta(load_schema(route.body_schema))
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}}}
    return operation


def build_openapi(gateway: Gateway, routes: list[Route]) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": ERROR_BODY}
    paths: dict[str, dict[str, Any]] = {}
    for route in sorted(routes, key=lambda r: (r.path, r.method)):
        variants = [route.path]
        if route.access is Access.TENANT_API and route.path.startswith(API_PREFIX + "/"):
            variants.append(API_TENANT_PREFIX + route.path[len(API_PREFIX):])
        for path in variants:
            paths.setdefault(path, {})[route.method.lower()] = _operation(route, path, components)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Libervia Gateway",
            "version": __version__,
            "description": "Multi-tenant gateway. Every error is the JSON body of components.schemas.Error; every "
                           "response carries X-Request-Id. Generated by `libervia openapi` from the route table.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": dict(sorted(components.items())),
        },
        "paths": dict(sorted(paths.items())),
    }
