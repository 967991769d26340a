"""The rules of the generated spec.config schema, checked in Python, worded as the API server words them.

The API server refuses a bad spec.config at `kubectl apply` time; the operator checks the same schema again when
it parses a Runner (an object stored before a schema change, or written with validation off, still gets a clear
message naming the path). Covers what schema.py generates: types, enum, pattern, minimum, required, unknown fields
(strict field validation) and the `!has(self.x)` CEL rules.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from glrt_operator.runner_config.schema import spec_config_schema

_HAS_NOT = re.compile(r"!has\(self\.(\w+)\)")
_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "number": (int, float),
}


@cache
def _schema() -> dict[str, Any]:
    return spec_config_schema(descriptions="none")


def config_errors(config: Any, path: str = "spec.config") -> list[str]:
    """Every error the API server would report for this spec.config (empty when it is valid)."""
    return schema_errors(_schema(), config, path)


def schema_errors(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, int | str):
            return [f"{path}: Invalid value: must be an integer or a string"]
        return []
    kind = schema.get("type")
    if kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{path}: Invalid value: must be of type integer"]
    elif kind in _TYPES and (not isinstance(value, _TYPES[kind]) or (kind == "number" and isinstance(value, bool))):
        return [f"{path}: Invalid value: must be of type {kind}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(f'"{v}"' for v in schema["enum"])
        errors.append(f"{path}: Unsupported value: {value!r}: supported values: {supported}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        errors.append(f"{path}: Invalid value: should match {schema['pattern']!r}")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{path}: Invalid value: should be greater than or equal to {schema['minimum']}")
    if kind == "array":
        for i, item in enumerate(value):
            errors += schema_errors(schema["items"], item, f"{path}[{i}]")
    if kind == "object":
        props = schema.get("properties")
        for k, v in value.items():
            if props is not None:
                if k not in props:
                    errors.append(f'unknown field "{path}.{k}"')
                else:
                    errors += schema_errors(props[k], v, f"{path}.{k}")
            elif "additionalProperties" in schema:
                errors += schema_errors(schema["additionalProperties"], v, f"{path}.{k}")
        for required in schema.get("required", []):
            if required not in value:
                errors.append(f"{path}.{required}: Required value")
        for rule in schema.get("x-kubernetes-validations", []):
            match = _HAS_NOT.fullmatch(rule["rule"])
            if match is None:
                raise ValueError(f"{path}: no Python check for the CEL rule {rule['rule']!r}")
            if match.group(1) in value:
                errors.append(f"{path}: Invalid value: {rule['message']}")
    return errors
