"""Routes as data: every route says which access group it belongs to, and the pipeline does the rest.

A plugin's ``libervia_routes`` hook returns :class:`Route` objects. The host wraps each handler with the steps its
access group needs (authenticate, resolve tenant, authorise, rate limit, validate the body), so a handler only
does its own job and reads what the pipeline established through :mod:`libervia.context`.
"""

from __future__ import annotations

import copy
import enum
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from libervia.errors import StartupError
from libervia.schemas import load_schema

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What a route may declare as a schema: the name of a built-in schema (``requests/tenant_create``), a JSON Schema
# document, or a package resource holding one (``importlib.resources.files("my_plugin") / "body.schema.json"``).
SchemaSource = str | Mapping[str, Any] | Traversable
# What validation consumes once a route is built: a built-in name, or a checked document of the plugin's own.
RouteSchema = str | dict[str, Any]


def schema_resource(package: str, name: str) -> dict[str, Any]:
    """Load ``name`` from ``package``'s data (a plugin's own ``*.schema.json``) as a checked schema document."""
    return schema_document(normalise_schema(resources.files(package).joinpath(name)))


def normalise_schema(source: SchemaSource) -> RouteSchema:
    """One form for validation whatever the route declared; a bad schema raises ``ValueError`` naming why.

    Built-in names stay names (validation caches by name); documents and resources become a private copy of the
    document, checked against the JSON Schema meta-schema (draft 2020-12) once, here, instead of on a request.
    """
    if isinstance(source, str):
        try:
            load_schema(source)
        except FileNotFoundError:
            raise ValueError(f"there is no built-in schema {source!r}") from None
        return source
    if isinstance(source, Mapping):
        document = copy.deepcopy(dict(source))
    elif isinstance(source, Traversable):
        try:
            document = json.loads(source.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"schema resource {source.name!r} cannot be read: {exc}") from None
        if not isinstance(document, dict):
            raise ValueError(f"schema resource {source.name!r} does not hold a JSON object")
    else:
        raise ValueError(f"a schema must be a built-in name, a dict or a package resource, not {type(source).__name__}")
    try:
        Draft202012Validator.check_schema(document)
    except SchemaError as exc:
        raise ValueError(f"invalid JSON Schema: {exc.message}") from None
    return document


def schema_document(schema: RouteSchema) -> dict[str, Any]:
    """The JSON Schema document behind a normalised route schema."""
    return load_schema(schema) if isinstance(schema, str) else schema


def schema_label(schema: RouteSchema) -> str:
    """A stable name for a normalised route schema (OpenAPI component names, logs)."""
    if isinstance(schema, str):
        return schema
    named = schema.get("title") or schema.get("$id")
    if isinstance(named, str) and named:
        return named
    digest = hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()[:12]
    return f"schema_{digest}"


class Role(enum.StrEnum):
    GLOBAL_ADMIN = "global_admin"
    TENANT_ADMIN = "tenant_admin"
    PUBLIC = "public"


class Access(enum.Enum):
    """Who may call a route. One table (``libervia.authorization``) maps each group to its roles."""

    OPEN = "open"                    # /health: nobody authenticates
    TENANT_API = "tenant_api"        # /api/v1/*: a tenant's public or tenant_admin key; tenant resolved, rate limited
    TENANT_READ = "tenant_read"      # own tenant_admin (even while suspended) or global_admin; read-only
    TENANT_MANAGE = "tenant_manage"  # own tenant_admin of an active tenant, or global_admin
    GLOBAL_ADMIN = "global_admin"    # gateway operators only


@dataclass(frozen=True, slots=True)
class Route:
    """One HTTP route.

    ``path`` uses aiohttp's ``{name}`` syntax. For ``TENANT_READ`` and ``TENANT_MANAGE`` routes,
    ``tenant_param`` names the path parameter that holds the tenant id. ``TENANT_API`` routes are also served
    under ``/api/v1/tenants/{tenant}/...`` (the path form of tenant resolution) without declaring it twice.
    ``body_schema`` / ``query_schema`` are each a :data:`SchemaSource`: the name of a built-in schema under
    ``schemas/`` (``"requests/tenant_create"``), a JSON Schema dict, or a package resource
    (``importlib.resources.files("my_plugin") / "body.schema.json"``, or :func:`schema_resource`). Every form is
    validated the same way: the same 400 ``VALIDATION_ERROR`` details, schema ``default`` values filled in, query
    values coerced to the declared types, the same body size and nesting limits. The pipeline puts the result in
    the request context (:func:`libervia.context.body`, :func:`libervia.context.query`). A schema that is not
    valid JSON Schema raises :class:`libervia.errors.StartupError` when the route is built: start-up stops
    with one line naming the route.
    """

    method: str
    path: str
    handler: Handler
    access: Access
    name: str | None = None
    tenant_param: str | None = None
    body_schema: RouteSchema | None = None
    query_schema: RouteSchema | None = None

    def __post_init__(self) -> None:
        for field_name in ("body_schema", "query_schema"):
            declared = getattr(self, field_name)
            if declared is None:
                continue
            try:
                normalised = normalise_schema(declared)
            except ValueError as exc:
                raise StartupError([f"plugins: route {self.method} {self.path}: {field_name}: {exc}"]) from None
            object.__setattr__(self, field_name, normalised)
