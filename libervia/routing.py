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
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from libervia.errors import StartupError
from libervia.schemas import REGISTERED_PREFIX, load_schema, register_schema

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What a route may declare as a schema: the name of a built-in schema (``requests/tenant_create``), a JSON Schema
# document, or a package resource holding one (``importlib.resources.files("my_plugin") / "body.schema.json"``).
SchemaSource = str | Mapping[str, Any] | Traversable
_NOT_WORD = re.compile(r"[^A-Za-z0-9]+")


def schema_resource(package: str, name: str) -> dict[str, Any]:
    """Load ``name`` from ``package``'s data (a plugin's own ``*.schema.json``) as a checked schema document."""
    return _checked_document(resources.files(package).joinpath(name))


def route_schema(source: SchemaSource) -> str:
    """The name validation knows a route schema by, whatever form the route declared it in.

    A built-in name is checked and kept. A dict or a package resource is checked against the JSON Schema
    meta-schema (draft 2020-12) once, here, and registered with :mod:`libervia.schemas` under a name derived from
    its title and content: from then on it is loaded, cached and validated exactly like a built-in schema. A bad
    schema raises ``ValueError`` naming why.
    """
    if isinstance(source, str):
        try:
            load_schema(source)
        except (FileNotFoundError, KeyError):
            raise ValueError(f"there is no built-in schema {source!r}") from None
        return source
    document = _checked_document(source)
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    title = document.get("title")
    label = _NOT_WORD.sub("_", title).strip("_")[:40] if isinstance(title, str) else ""
    name = f"{REGISTERED_PREFIX}{label or 'schema'}_{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"
    register_schema(name, json.loads(canonical))   # a private copy: later edits of the caller's dict change nothing
    return name


def _checked_document(source: Mapping[str, Any] | Traversable) -> dict[str, Any]:
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

    # Members are singletons, so identity hashes them: Enum's own __hash__ runs Python code on every lookup of
    # the role table, once per authenticated request.
    __hash__ = object.__hash__


@dataclass(frozen=True, slots=True)
class Route:
    """One HTTP route.

    ``path`` uses aiohttp's ``{name}`` syntax. For ``TENANT_READ`` and ``TENANT_MANAGE`` routes,
    ``tenant_param`` names the path parameter that holds the tenant id. ``TENANT_API`` routes are also served
    under ``/api/v1/tenants/{tenant}/...`` (the path form of tenant resolution) without declaring it twice.
    ``body_schema`` / ``query_schema`` are each a :data:`SchemaSource`: the name of a built-in schema under
    ``schemas/`` (``"requests/tenant_create"``), a JSON Schema dict, or a package resource
    (``importlib.resources.files("my_plugin") / "body.schema.json"``). :func:`route_schema` turns a dict or a
    resource into a name (the fields are typed ``str`` for that; passing the dict or resource itself works too).
    Every form is validated the same way: the same 400 ``VALIDATION_ERROR`` details, schema ``default`` values
    filled in, query values coerced to the declared types, the same body size and nesting limits. The pipeline puts
    the result in the request context (:func:`libervia.context.body`, :func:`libervia.context.query`). A schema
    that is not valid JSON Schema raises :class:`libervia.errors.StartupError` when the route is built: start-up
    stops with one line naming the route.
    """

    method: str
    path: str
    handler: Handler
    access: Access
    name: str | None = None
    tenant_param: str | None = None
    body_schema: str | None = None
    query_schema: str | None = None

    def __post_init__(self) -> None:
        for field_name in ("body_schema", "query_schema"):
            declared = getattr(self, field_name)
            if declared is None:
                continue
            try:
                normalised = route_schema(declared)
            except ValueError as exc:
                raise StartupError([f"plugins: route {self.method} {self.path}: {field_name}: {exc}"]) from None
            object.__setattr__(self, field_name, normalised)
