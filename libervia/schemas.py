"""Load the JSON Schemas in ``schemas/`` and validate documents against them.

Validation errors come back as a list of ``{"path": "$.a.b[0]", "message": ...}`` entries: the ``details`` of a
400 ``VALIDATION_ERROR`` and, at start-up, one line per bad setting.

Requests are validated by a :class:`CompiledSchema`: jsonschema-rs (compiled, about 250 times faster than
``jsonschema`` on a decision body) answers "valid?" on the success path; only a document it refuses goes to
``jsonschema``, whose verdict and messages are the contract (API.md's ``details``). So a document the two
libraries judge differently is judged as ``jsonschema`` judges it, except one that jsonschema-rs accepts and
``jsonschema`` would refuse; the differences known between the two (ECMA vs Python regular expressions, formats)
all go the other way, and formats are not asserted by either here. Defaults are filled exactly where the
``jsonschema`` filler fills them; a schema whose defaults sit where that cannot be reproduced cheaply is
validated by ``jsonschema`` on both paths.

Error lists are bounded: collection stops after ``MAX_DETAILS`` violations (a 900 KB body with 50,000 bad items
costs what 50 do), and each message is cut at ``MAX_MESSAGE_CHARS`` (``jsonschema`` puts the whole offending
instance in some messages).
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from libervia.errors import validation_error

MAX_DETAILS = 50
MAX_MESSAGE_CHARS = 300


def _with_defaults(validator_class: Any) -> Any:
    """A validator that also fills in ``default`` values of object properties while it validates."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: Mapping[str, Any], instance: Any, schema: Any) -> Any:
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if isinstance(subschema, dict) and "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})  # type: ignore[no-untyped-call]  # unannotated in types-jsonschema


# Keywords whose messages show the instance (``f"{instance!r} is too long"``). On a large instance that repr is
# megabytes, built in C while holding the interpreter; these keywords see a view whose repr stops where the
# message is cut anyway (same characters up to MAX_MESSAGE_CHARS). ``properties`` is not among them: the filler
# writes defaults into the instance it is given.
_SHOWING_KEYWORDS = ("type", "enum", "const", "maxItems", "minItems", "uniqueItems", "maxLength", "minLength",
                     "pattern", "format", "contains", "minProperties", "maxProperties", "not", "anyOf", "oneOf")
_LARGE = 64


def _repr_prefix(value: Any, budget: int) -> str:
    """The first ``budget`` characters (or a few more) of ``repr(value)`` for JSON values, without building it."""
    if isinstance(value, list):
        parts, used = ["["], 1
        for index, item in enumerate(value):
            if used >= budget:
                return "".join(parts)
            piece = (", " if index else "") + _repr_prefix(item, budget - used)
            parts.append(piece)
            used += len(piece)
        return "".join(parts) + "]"
    if isinstance(value, dict):
        parts, used = ["{"], 1
        for index, (key, item) in enumerate(value.items()):
            if used >= budget:
                return "".join(parts)
            piece = (", " if index else "") + _repr_prefix(key, budget - used) + ": " + _repr_prefix(item, budget)
            parts.append(piece)
            used += len(piece)
        return "".join(parts) + "}"
    if isinstance(value, str) and len(value) > budget:
        return repr(value[:budget])[:-1]
    return repr(value)


class _ShownList(list):  # type: ignore[type-arg]
    def __repr__(self) -> str:
        return _repr_prefix(list(self), MAX_MESSAGE_CHARS)


class _ShownDict(dict):  # type: ignore[type-arg]
    def __repr__(self) -> str:
        return _repr_prefix(dict(self), MAX_MESSAGE_CHARS)


class _ShownStr(str):
    def __repr__(self) -> str:
        return _repr_prefix(str(self), MAX_MESSAGE_CHARS)


def _shown(instance: Any) -> Any:
    if isinstance(instance, list) and len(instance) > _LARGE:
        return _ShownList(instance)
    if isinstance(instance, dict) and len(instance) > _LARGE:
        return _ShownDict(instance)
    if isinstance(instance, str) and len(instance) > MAX_MESSAGE_CHARS:
        return _ShownStr(instance)
    return instance


def _bounded_messages(validator_class: Any) -> Any:
    def bounded(keyword: Any) -> Any:
        def check(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
            return keyword(validator, value, _shown(instance), schema)
        return check

    # jsonschema's extend() is untyped in its stubs; what it returns is a validator class like the one given.
    return validators.extend(validator_class, {name: bounded(validator_class.VALIDATORS[name])
                                               for name in _SHOWING_KEYWORDS if name in validator_class.VALIDATORS}
                             )  # type: ignore[no-untyped-call]


_PlainValidator = _bounded_messages(Draft202012Validator)
_FillingValidator = _bounded_messages(_with_defaults(Draft202012Validator))


def json_path(error: ValidationError) -> str:
    path = "$"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _describe(error: ValidationError) -> dict[str, Any]:
    message = error.message
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS - 1] + "…"
    return {"path": json_path(error), "message": message}


def _bounded(errors: Iterable[ValidationError], limit: int | None) -> list[dict[str, Any]]:
    """The first ``limit`` violations sorted by path, plus one entry saying the rest were not looked for."""
    taken = list(errors if limit is None else itertools.islice(errors, limit + 1))
    more = limit is not None and len(taken) > limit
    if more:
        taken = taken[:limit]
    found = [_describe(error) for error in sorted(taken, key=lambda e: (json_path(e), e.message))]
    if more:
        found.append({"path": "$", "message": f"more violations not listed: validation stopped after {limit}"})
    return found


# --- where defaults are filled ------------------------------------------------------------------------------------

# Keywords that judge an object without depending on which of its declared properties are present, so filling
# a default cannot change their verdict. A schema on the way to a default must use only these.
_FILL_NEUTRAL = frozenset({"$schema", "$id", "$comment", "title", "description", "type", "properties",
                           "additionalProperties", "required", "default", "examples", "deprecated", "readOnly",
                           "writeOnly", "$defs"})
_UNSUPPORTED = object()


def _count_defaults(schema: Any) -> int:
    """How many ``default`` keywords the schema holds anywhere (values of data keywords are not schemas)."""
    if isinstance(schema, list):
        return sum(_count_defaults(item) for item in schema)
    if not isinstance(schema, dict):
        return 0
    count = 1 if "default" in schema else 0
    for key, value in schema.items():
        if key not in ("default", "const", "enum", "examples"):
            count += _count_defaults(value)
    return count


def _chain_plan(schema: Mapping[str, Any], seen: list[int]) -> Any:
    """The defaults to fill at this object and below, following ``properties`` only: ``None`` when there are
    none, ``_UNSUPPORTED`` when filling could change another keyword's verdict."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return None
    defaults = []
    children = {}
    for name, sub in properties.items():
        if not isinstance(sub, dict):
            continue
        if "default" in sub:
            defaults.append((name, sub["default"]))
            seen.append(1)
        child = _chain_plan(sub, seen)
        if child is _UNSUPPORTED:
            return _UNSUPPORTED
        if child is not None:
            children[name] = child
    if not defaults and not children:
        return None
    required = schema.get("required", [])
    if not set(schema) <= _FILL_NEUTRAL or any(name in required for name, _ in defaults):
        return _UNSUPPORTED
    return (defaults, children)


def _fill(instance: Any, plan: Any) -> None:
    """Fill defaults as the ``jsonschema`` filler does: missing properties first, then each present child."""
    if not isinstance(instance, dict):
        return
    defaults, children = plan
    for name, value in defaults:
        if name not in instance:
            instance[name] = copy.deepcopy(value)
    for name, child in children.items():
        if name in instance:
            _fill(instance[name], child)


def _defaults_valid(schema: Mapping[str, Any], plan: Any) -> bool:
    defaults, children = plan
    properties = schema["properties"]
    for name, value in defaults:
        probe = copy.deepcopy(value)
        if name in children:
            _fill(probe, children[name])
        if next(iter(Draft202012Validator(properties[name]).iter_errors(probe)), None) is not None:
            return False
    return all(_defaults_valid(properties[name], child) for name, child in children.items())


def _default_plan(schema: Mapping[str, Any]) -> Any:
    seen: list[int] = []
    plan = _chain_plan(schema, seen)
    if plan is _UNSUPPORTED or len(seen) != _count_defaults(schema):
        return _UNSUPPORTED  # a default under items, a combinator or a $ref: leave it to jsonschema
    if plan is not None and "#/properties" in json.dumps(schema):
        return _UNSUPPORTED  # a $ref into the chain would reach it by another way
    if plan is not None and not _defaults_valid(schema, plan):
        return _UNSUPPORTED  # jsonschema reports a default its own schema refuses; keep that
    return plan


class CompiledSchema:
    """One schema prepared for validating many documents (see the module docstring for the two paths)."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        Draft202012Validator.check_schema(schema)
        self.schema = schema
        self._plain = _PlainValidator(schema)
        self._filling = _FillingValidator(schema)
        self._plan = _default_plan(schema)
        self._fast: Any = None
        if self._plan is not _UNSUPPORTED:
            try:
                self._fast = jsonschema_rs.Draft202012Validator(dict(schema), validate_formats=False, offline=True)
            except (jsonschema_rs.ValidationError, ValueError):  # something it cannot compile: jsonschema only
                self._fast = None

    @property
    def compiled(self) -> bool:
        """Whether the success path runs compiled (else every document goes through ``jsonschema``)."""
        return self._fast is not None

    def accepts(self, instance: Any) -> bool:
        """The compiled verdict, filling defaults when it is yes; False also means "ask ``jsonschema``"."""
        if self._fast is None:
            return False
        try:
            valid = self._fast.is_valid(instance)
        except (ValueError, TypeError, OverflowError):  # e.g. an integer beyond 64 bits
            return False
        if valid and self._plan is not None:
            _fill(instance, self._plan)
        return bool(valid)

    def problems(self, instance: Any, *, fill_defaults: bool = False,
                 limit: int | None = MAX_DETAILS) -> list[dict[str, Any]]:
        """Violations by ``jsonschema``, at most ``limit`` (plus a last entry when there were more)."""
        validator = self._filling if fill_defaults else self._plain
        return _bounded(validator.iter_errors(instance), limit)

    def validate(self, instance: Any) -> Any:
        """``instance`` completed with defaults; 400 ``VALIDATION_ERROR`` naming each failing path."""
        return instance if self.accepts(instance) else self.explain(instance)

    def explain(self, instance: Any) -> Any:
        """The failure path of :meth:`validate`, for an instance :meth:`accepts` refused: ``jsonschema`` names
        the violations (400), or finds none and the instance, completed with defaults, stands."""
        found = self.problems(instance, fill_defaults=True)
        if found:
            raise validation_error(found)
        return instance


SchemaRef = str | Mapping[str, Any] | CompiledSchema


# Schemas that plugins declare as dicts or ship as package data (``libervia.routing.route_schema``), kept under
# names of their own so that they are loaded, cached and validated exactly like the files under ``schemas/``.
REGISTERED_PREFIX = "registered/"
_registered: dict[str, dict[str, Any]] = {}


def register_schema(name: str, document: dict[str, Any]) -> None:
    """Make ``load_schema(name)`` answer ``document``; ``name`` starts with :data:`REGISTERED_PREFIX`."""
    _registered[name] = document


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """``name`` is relative to ``schemas/`` without the suffix: ``requests/create_tenant``, ``settings``."""
    if name.startswith(REGISTERED_PREFIX):
        return _registered[name]
    text = resources.files("libervia_schemas").joinpath(f"{name}.schema.json").read_text("utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return schema


@functools.cache
def _compiled_by_name(name: str) -> CompiledSchema:
    return CompiledSchema(load_schema(name))


# Schema dicts compiled so far, by identity; the dict is kept so that its id cannot be reused.
_compiled_by_id: dict[int, tuple[Mapping[str, Any], CompiledSchema]] = {}


def compile_schema(schema: SchemaRef) -> CompiledSchema:
    """The compiled form of a schema name under ``schemas/``, a schema dict (compiled once per dict object) or
    an already compiled schema."""
    if isinstance(schema, CompiledSchema):
        return schema
    if isinstance(schema, str):
        return _compiled_by_name(schema)
    known = _compiled_by_id.get(id(schema))
    if known is None or known[0] is not schema:
        known = _compiled_by_id[id(schema)] = (schema, CompiledSchema(schema))
    return known[1]


def problems(instance: Any, schema: Mapping[str, Any] | str, *, fill_defaults: bool = False,
             limit: int | None = None) -> list[dict[str, Any]]:
    """Every violation of ``schema`` (a name under ``schemas/`` or a schema dict), sorted by path; at most
    ``limit`` of them when given.

    With ``fill_defaults`` the instance is completed in place with the schema's defaults.
    """
    if isinstance(schema, str):
        return _compiled_by_name(schema).problems(instance, fill_defaults=fill_defaults, limit=limit)
    validator = (_FillingValidator if fill_defaults else _PlainValidator)(dict(schema))
    return _bounded(validator.iter_errors(instance), limit)


def coerce_query(params: Iterable[tuple[str, str]], schema: SchemaRef) -> dict[str, Any]:
    """Turn query-string values into the types the schema declares (integer, number, boolean), then validate.

    Values that cannot be converted are left as strings so that validation names them.
    """
    compiled = compile_schema(schema)
    props = compiled.schema.get("properties", {})
    result: dict[str, Any] = {}
    for key, raw in params:
        kind = props.get(key, {}).get("type")
        result[key] = _convert(raw, kind)
    return compiled.validate(result)


# ASCII only: str.isdigit() and float() also accept other scripts' digits ("１") and words ("nan", "infinity").
_QUERY_INTEGER = re.compile(r"-?[0-9]{1,30}")
_QUERY_NUMBER = re.compile(r"-?[0-9]{1,30}(?:\.[0-9]{1,30})?(?:[eE][-+]?[0-9]{1,3})?")


def _convert(raw: str, kind: Any) -> Any:
    try:
        if kind == "integer" and _QUERY_INTEGER.fullmatch(raw):
            return int(raw)
        if kind == "number" and _QUERY_NUMBER.fullmatch(raw):
            return float(raw)
        if kind == "boolean" and raw.lower() in ("true", "false", "1", "0"):
            return raw.lower() in ("true", "1")
    except ValueError:
        return raw
    return raw
