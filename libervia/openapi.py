"""The OpenAPI 3.1 document, generated from the route table, the request schemas and the response schemas.

Routes are data (:class:`libervia.routing.Route`), so the document cannot drift from what the gateway serves:
``libervia openapi`` prints it, ``GET /openapi.json`` serves it, and a test keeps ``docs/openapi.json`` equal to it.
A route's success body is described by ``schemas/responses/<route name>.schema.json`` when that file exists; the
tests validate real responses against the same files (through schemathesis and directly).
"""

from __future__ import annotations

import copy
import re
from importlib import resources
from typing import Any

from libervia import __version__
from libervia.gateway import Gateway
from libervia.routing import Access, Route
from libervia.schemas import load_schema
from libervia.tenants.ids import MAX_LENGTH, MIN_LENGTH, RESERVED_IDS

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
    "403": "INSUFFICIENT_ROLE, TENANT_SUSPENDED, HUMAN_ACTOR_REQUIRED, or QUOTA_EXCEEDED (a write past the "
           "tenant's maxEvents or maxStorageMB; details {quota, limit, used}; nothing was written)",
    "404": "NOT_FOUND, TENANT_NOT_FOUND or the entity's own *_NOT_FOUND code",
    "405": "METHOD_NOT_ALLOWED (the Allow header lists the methods of the path)",
    "409": "INVALID_STATE, TENANT_EXISTS, KEY_ALREADY_REVOKED, REVIEW_ALREADY_OPEN, or CONCURRENT_UPDATE (another "
           "gateway process changed the tenant at the same moment five times running: retry the request)",
    "408": "REQUEST_TIMEOUT: the headers or the body did not arrive in time (http.* settings); the connection is "
           "closed",
    "413": "PAYLOAD_TOO_LARGE",
    "415": "UNSUPPORTED_CONTENT_ENCODING: the body's Content-Encoding is not identity, gzip or deflate",
    "422": "A domain rule refused the request: PROTOCOL_REJECTED, CLOSED_LAYER_BLOCKED, EVIDENCE_MISSING, "
           "INVALID_FOLLOW_UP, NOTES_REQUIRED, REASON_REQUIRED, DOMAIN_RULE_VIOLATION",
    "429": "RATE_LIMITED (Retry-After, retry_after) or TOO_MANY_AUTH_FAILURES (Retry-After)",
    "503": "STORAGE_UNAVAILABLE (nothing was applied; retry later) or STORAGE_CORRUPT (the tenant's stored data "
           "cannot be read; operators: runbook PROC-007)",
}
# What an open route can answer besides its success: no authentication, so no 401/403/429; 404 for an unknown
# docs asset, 405 for another method, 413 for a body over the limit.
OPEN_ERROR_STATUSES = ("404", "405", "413")

ERROR_BODY = {
    "type": "object",
    "required": ["error", "code", "message", "request_id"],
    "properties": {
        "error": {"type": "string"},
        "code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
        "message": {"type": "string"},
        "request_id": {"type": "string"},
        "retry_after": {"type": "number"},
        "details": {},
    },
}

# A valid tenant id (API.md §3), in a pattern generators understand; the request schemas keep accepting any
# string for ``POST /admin/tenants`` so that a bad id answers INVALID_TENANT_ID rather than VALIDATION_ERROR.
TENANT_ID = {"type": "string", "minLength": MIN_LENGTH, "maxLength": MAX_LENGTH, "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$",
             "description": "A tenant id; reserved, never valid: " + ", ".join(sorted(RESERVED_IDS))}
# An empty (or blank) X-Tenant-Id counts as absent: the tenant then comes from the path or the key.
BLANK = {"type": "string", "pattern": "^\\s*$"}
# Marks the parameters that name the tenant, for tools that narrow the document to one credential's tenant.
TENANT_PARAMETER = "x-libervia-tenant"
# Body properties documented more precisely than the request schema checks them.
BODY_REFINEMENTS = {"requests/tenant_create": {"id": TENANT_ID}}

_HEADER = {"schema": {"type": "string"}}
_INT_HEADER = {"schema": {"type": "integer"}}
REQUEST_ID_HEADERS = {"X-Request-Id": {"description": "The request's id (the client's, if valid)", **_HEADER}}
RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": {"description": "Requests per minute allowed to the tenant", **_INT_HEADER},
    "X-RateLimit-Remaining": {"description": "Requests left now", **_INT_HEADER},
    "X-RateLimit-Reset": {"description": "Seconds until the quota is whole again", **_INT_HEADER},
    "RateLimit-Policy": {"description": "IETF RateLimit policy field", **_HEADER},
    "RateLimit": {"description": "IETF RateLimit field", **_HEADER},
}
RETRY_AFTER_HEADER = {"Retry-After": {"description": "Seconds to wait before retrying", **_INT_HEADER}}
ALLOW_HEADER = {"Allow": {"description": "The methods the path accepts", **_HEADER}}
TOTAL_COUNT_HEADER = {"X-Total-Count": {"description": "How many items match, over every page", **_INT_HEADER}}

# Success status of the routes that do not answer 200.
CREATED = {"tenant.create", "key.create", "key.rotate", "core.decide", "core.consequence", "mandate.grant",
           "review.open"}
# Routes whose success is not JSON.
TEXT_BODIES = {"metrics": "text/plain", "tenant_metrics": "text/plain", "docs": "text/html",
               "docs.asset": "application/octet-stream", "console.index": "text/html",
               "console.asset": "application/octet-stream"}
# Routes that answer a redirect instead of a body.
REDIRECTS = {"console.redirect": "308"}
LOCATION_HEADER = {"Location": {"description": "Where the resource is", **_HEADER}}
# Statuses other than the success that a route answers with its own response schema (readiness: 503 + checks).
ALSO_SUCCESS_SHAPED = {"ready": "503"}

# ``links`` between operations (for stateful testing and readers): from an operation's success to the operations
# that use a value of its response body. (source route, target route, {parameter: runtime expression}).
LINKS: list[tuple[str, str, dict[str, str]]] = [
    ("tenant.create", "tenant.get", {"id": "$response.body#/id"}),
    ("tenant.create", "tenant.update", {"id": "$response.body#/id"}),
    ("tenant.create", "key.create", {"id": "$response.body#/id"}),
    ("tenant.create", "key.list", {"id": "$response.body#/id"}),
    ("tenant.create", "tenant.suspend", {"id": "$response.body#/id"}),
    ("tenant.create", "audit_verify", {"id": "$response.body#/id"}),
    ("tenant.create", "query.dashboard", {"tenantId": "$response.body#/id"}),
    ("tenant.suspend", "tenant.resume", {"id": "$response.body#/tenant/id"}),
    ("key.create", "key.revoke", {"id": "$request.path.id", "keyId": "$response.body#/keyId"}),
    ("core.decide", "core.episode", {"id": "$response.body#/episodio_id"}),
    ("core.decide", "core.close_episode", {"id": "$response.body#/episodio_id"}),
    ("core.observe", "core.close_episode", {"id": "$response.body#/episodio_id"}),
    ("mandate.grant", "mandate.suspend", {"id": "$request.path.id", "mid": "$response.body#/id"}),
    ("mandate.grant", "mandate.revoke", {"id": "$request.path.id", "mid": "$response.body#/id"}),
    ("mandate.grant", "query.mandate", {"tenantId": "$request.path.id", "mandateId": "$response.body#/id"}),
    ("mandate.suspend", "mandate.resume", {"id": "$request.path.id", "mid": "$response.body#/id"}),
    ("review.open", "review.resolve", {"id": "$request.path.id", "rid": "$response.body#/id"}),
    ("review.open", "review.dismiss", {"id": "$request.path.id", "rid": "$response.body#/id"}),
    ("review.open", "review.notes", {"id": "$request.path.id", "rid": "$response.body#/id"}),
    ("review.open", "query.review", {"tenantId": "$request.path.id", "reviewId": "$response.body#/id"}),
]


def _component_name(schema_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", schema_name.split("/")[-1])


def operation_id(route: Route, path: str) -> str:
    return ((route.name or f"{route.method} {path}").replace(".", "_").replace(" ", "_")
            + ("_by_path" if path.startswith(API_TENANT_PREFIX) else ""))


def _inline_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema without ``$schema``/``$id`` and with its local ``#/$defs/…`` references replaced by their
    targets, so that it stays valid wherever the document places it (a ``$ref`` to ``#/$defs`` would otherwise
    resolve against the OpenAPI document's root and dangle)."""
    defs = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                target = copy.deepcopy(defs[ref[len("#/$defs/"):]])
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return resolve({**target, **rest})
            return {k: resolve(v) for k, v in node.items() if k not in ("$schema", "$id", "$defs")}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


def response_schema_name(route: Route) -> str | None:
    """``responses/<route name>`` if the route's response schema exists under ``schemas/responses/``."""
    if not route.name:
        return None
    name = f"responses/{route.name}"
    found = resources.files("libervia_schemas").joinpath(f"{name}.schema.json").is_file()
    return name if found else None


def _success(route: Route, components: dict[str, Any]) -> dict[str, Any]:
    headers: dict[str, Any] = dict(REQUEST_ID_HEADERS)
    if route.access is Access.TENANT_API:
        headers.update(RATE_LIMIT_HEADERS)
    if route.name == "tenant.list":
        headers.update(TOTAL_COUNT_HEADER)
    response: dict[str, Any] = {"description": "Success", "headers": headers}
    schema_name = response_schema_name(route)
    if schema_name is not None:
        schema = _inline_defs(load_schema(schema_name))
        component = _component_name(route.name or schema_name) + "_response"
        components[component] = schema
        response["description"] = schema.get("title", "Success")
        content: dict[str, Any] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}}
        if route.name == "audit_export":
            content["application/x-ndjson"] = {"schema": {"type": "string"}}
        response["content"] = content
    elif route.name in TEXT_BODIES:
        response["content"] = {TEXT_BODIES[route.name]: {"schema": {"type": "string"}}}
    return response


def _errors(route: Route) -> dict[str, Any]:
    statuses = OPEN_ERROR_STATUSES if route.access is Access.OPEN else tuple(ERROR_STATUSES)
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    answers: dict[str, Any] = {}
    for status in statuses:
        headers: dict[str, Any] = dict(REQUEST_ID_HEADERS)
        if status == "429":
            headers.update(RETRY_AFTER_HEADER)
            if route.access is Access.TENANT_API:
                headers.update(RATE_LIMIT_HEADERS)
        elif status == "405":
            headers.update(ALLOW_HEADER)
        answers[status] = {"description": ERROR_STATUSES[status], "headers": headers, "content": error}
    return answers


def _operation(route: Route, path: str, components: dict[str, Any],
               links: dict[str, dict[str, Any]]) -> dict[str, Any]:
    success_status = REDIRECTS.get(route.name or "") or ("201" if route.name in CREATED else "200")
    success = _success(route, components)
    if route.name in REDIRECTS:
        success = {"description": "Redirect", "headers": {**success["headers"], **LOCATION_HEADER}}
    if route.name in links:
        success["links"] = links[route.name]
    responses: dict[str, Any] = {success_status: success, **_errors(route)}
    if route.name in ALSO_SUCCESS_SHAPED:
        responses[ALSO_SUCCESS_SHAPED[route.name]] = {**success, "description": "Not ready: a check failed"}
    operation: dict[str, Any] = {
        "operationId": operation_id(route, path),
        "description": ACCESS_TEXT[route.access],
        "tags": [path.split("/")[1] if path.count("/") > 1 else "health"],
        "responses": dict(sorted(responses.items())),
    }
    if route.access is not Access.OPEN:
        operation["security"] = [{"bearer": []}]
    tenant_params = {route.tenant_param, "tenant" if path.startswith(API_TENANT_PREFIX) else None}
    parameters: list[dict[str, Any]] = []
    for name in re.findall(r"{(\w+)}", path):
        if name in tenant_params:
            parameters.append({"name": name, "in": "path", "required": True, "schema": TENANT_ID,
                               TENANT_PARAMETER: True})
        else:
            parameters.append({"name": name, "in": "path", "required": True,
                               "schema": {"type": "string", "minLength": 1}})
    if route.access is Access.TENANT_API:
        parameters.append({"name": "X-Tenant-Id", "in": "header", "required": False, TENANT_PARAMETER: True,
                           "schema": {"anyOf": [TENANT_ID, BLANK]}})
    if route.query_schema:
        query = _inline_defs(load_schema(route.query_schema))
        for name, prop in query.get("properties", {}).items():
            parameters.append({"name": name, "in": "query", "required": name in query.get("required", []),
                               "schema": prop})
    if parameters:
        operation["parameters"] = parameters
    if route.body_schema:
        component = _component_name(route.body_schema)
        body = _inline_defs(load_schema(route.body_schema))
        for name, refined in BODY_REFINEMENTS.get(route.body_schema, {}).items():
            body["properties"][name] = refined
        components[component] = body
        operation["requestBody"] = {"required": bool(body.get("required")), "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}}}
    return operation


def _links(routes: list[Route]) -> dict[str, dict[str, Any]]:
    """Each source route's ``links``, keeping only those whose target is served (a plugin may be blocked)."""
    by_name = {route.name: route for route in routes if route.name}
    found: dict[str, dict[str, Any]] = {}
    for source, target, parameters in LINKS:
        if source in by_name and target in by_name:
            name = operation_id(by_name[target], by_name[target].path)
            found.setdefault(source, {})[name] = {"operationId": name, "parameters": parameters}
    return found


def build_openapi(gateway: Gateway, routes: list[Route]) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": ERROR_BODY}
    paths: dict[str, dict[str, Any]] = {}
    links = _links(routes)
    for route in sorted(routes, key=lambda r: (r.path, r.method)):
        variants = [route.path]
        if route.access is Access.TENANT_API and route.path.startswith(API_PREFIX + "/"):
            variants.append(API_TENANT_PREFIX + route.path[len(API_PREFIX):])
        for path in variants:
            route_links = links if path == route.path else {}
            paths.setdefault(path, {})[route.method.lower()] = _operation(route, path, components, route_links)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Libervia Gateway",
            "version": __version__,
            "description": "Multi-tenant gateway. Every error is the JSON body of components.schemas.Error; every "
                           "response carries X-Request-Id. Generated by `libervia openapi` from the route table. "
                           "Differences from the v1 API: docs/MIGRATING.md.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": dict(sorted(components.items())),
        },
        "paths": dict(sorted(paths.items())),
    }
