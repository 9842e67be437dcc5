"""Load the JSON Schemas in ``schemas/`` and validate documents against them.

Validation errors come back as a list of ``{"path": "$.a.b[0]", "message": ...}`` entries: the ``details`` of a
400 ``VALIDATION_ERROR`` and, at start-up, one line per bad setting.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from libervia.errors import validation_error


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


_FillingValidator = _with_defaults(Draft202012Validator)


def json_path(error: ValidationError) -> str:
    path = "$"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _describe(error: ValidationError) -> dict[str, Any]:
    return {"path": json_path(error), "message": error.message}


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """``name`` is relative to ``schemas/`` without the suffix: ``requests/create_tenant``, ``settings``."""
    text = resources.files("libervia_schemas").joinpath(f"{name}.schema.json").read_text("utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return schema


@functools.cache
def _validator(name: str, fill_defaults: bool) -> Draft202012Validator:
    cls = _FillingValidator if fill_defaults else Draft202012Validator
    return cls(load_schema(name))


def problems(instance: Any, schema: Mapping[str, Any] | str, *, fill_defaults: bool = False) -> list[dict[str, Any]]:
    """Every violation of ``schema`` (a name under ``schemas/`` or a schema dict), sorted by path.

    With ``fill_defaults`` the instance is completed in place with the schema's defaults.
    """
    if isinstance(schema, str):
        validator = _validator(schema, fill_defaults)
    else:
        validator = (_FillingValidator if fill_defaults else Draft202012Validator)(schema)
    found = sorted(validator.iter_errors(instance), key=lambda e: (json_path(e), e.message))
    return [_describe(error) for error in found]


def validate_request(instance: Any, schema_name: str) -> Any:
    """Validate a request body or query (filling defaults); raise 400 ``VALIDATION_ERROR`` naming each path."""
    found = problems(instance, schema_name, fill_defaults=True)
    if found:
        raise validation_error(found)
    return instance


def coerce_query(params: Iterable[tuple[str, str]], schema_name: str) -> dict[str, Any]:
    """Turn query-string values into the types the schema declares (integer, number, boolean), then validate.

    Values that cannot be converted are left as strings so that validation names them.
    """
    schema = load_schema(schema_name)
    props = schema.get("properties", {})
    result: dict[str, Any] = {}
    for key, raw in params:
        kind = props.get(key, {}).get("type")
        result[key] = _convert(raw, kind)
    return validate_request(result, schema_name)


def _convert(raw: str, kind: Any) -> Any:
    try:
        if kind == "integer" and raw.strip().lstrip("-").isdigit():
            return int(raw)
        if kind == "number":
            return float(raw)
        if kind == "boolean" and raw.lower() in ("true", "false", "1", "0"):
            return raw.lower() in ("true", "1")
    except ValueError:
        return raw
    return raw
