"""The CRD openAPIV3Schema of `spec.config`, generated from keys.json.

Structural and closed: every key gitlab-runner knows is a property; an unknown key is refused by the API server's
strict field validation (kubectl's default) with its path. Keys the operator owns and plain-text credentials are
kept as properties so that a CEL rule can refuse them with the reason.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from glrt_operator.runner_config.keys import (
    GLOBAL_SECTION,
    OWNED_GLOBAL,
    OWNED_RUNNER,
    SECRET_KEYS,
    Key,
    camel,
    spec_config_key,
)

GO_DURATION = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
SECRET_REF_SUFFIX = "SecretRef"

# The curated fields' constraints from before the full key set, kept so existing manifests mean the same. No
# `default`s: the operator's defaults (runners.model.CONFIG_DEFAULTS) fill in at render time, so they follow the
# operator release instead of being written into every stored Runner, and the operator can tell "unset" from "set".
CURATED: dict[tuple[str, ...], dict[str, Any]] = {
    ("concurrent",): {"minimum": 1},
    ("checkInterval",): {"minimum": 1},
    ("logLevel",): {"enum": ["debug", "info", "warn", "error", "fatal", "panic"]},
    ("shutdownTimeout",): {"minimum": 0},
    ("requestConcurrency",): {"minimum": 1},
    ("limit",): {"minimum": 0},
    ("outputLimit",): {"minimum": 1},
    ("kubernetes", "pollTimeout"): {"minimum": 1},
    ("cache",): {"required": ["type"]},
    ("cache", "type"): {"enum": ["s3", "gcs", "azure"]},
}
CURATED_ITEMS: dict[tuple[str, ...], dict[str, Any]] = {
    ("environment",): {"pattern": "^[A-Za-z_][A-Za-z0-9_]*=.*$"},
    ("kubernetes", "pullPolicy"): {"enum": ["always", "if-not-present", "never"]},
}

SECRET_REF_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "key"],
    "properties": {"name": {"type": "string", "minLength": 1}, "key": {"type": "string", "minLength": 1}},
}


def _leaf(key: Key) -> dict[str, Any]:
    kind = key.kind
    if kind in ("string", "datetime"):
        out: dict[str, Any] = {"type": "string"}
    elif kind == "integer":
        out = {"type": "integer"}
    elif kind == "number":
        out = {"type": "number"}
    elif kind == "boolean":
        out = {"type": "boolean"}
    elif kind == "duration":
        out = {"type": "string", "pattern": GO_DURATION}
    elif kind == "string-or-array":
        out = {"type": "array", "items": {"type": "string"}}
    elif kind == "int-or-string":
        out = {"x-kubernetes-int-or-string": True}
    elif kind == "any":
        out = {"x-kubernetes-preserve-unknown-fields": True}
    else:
        raise ValueError(f"unknown kind {kind!r}")
    if key.enum:
        out["enum"] = [e for e in key.enum if e]
    return out


def _node(key: Key, path: tuple[str, ...], toml_path: tuple[str, ...]) -> dict[str, Any]:
    if key.kind == "object":
        out = _object(key, path, toml_path)
    elif key.kind == "array":
        assert key.items is not None
        items = _node(key.items, path, toml_path)
        items.update(CURATED_ITEMS.get(path, {}))
        out = {"type": "array", "items": items}
    elif key.kind == "map":
        assert key.values is not None
        out = {"type": "object", "additionalProperties": _node(key.values, path, toml_path)}
    else:
        out = _leaf(key)
        if key.kind == "string-or-array":
            out["items"].update(CURATED_ITEMS.get(path, {}))
    if key.description:
        out["description"] = key.description
    out.update(CURATED.get(path, {}))
    return out


def _object(key: Key, path: tuple[str, ...], toml_path: tuple[str, ...]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    rules: list[dict[str, str]] = []
    for name, child in key.fields.items():
        child_toml = (*toml_path, child.toml) if child.toml else toml_path
        props[name] = _node(child, (*path, name), child_toml)
        if child_toml in SECRET_KEYS:
            ref = f"{name}{SECRET_REF_SUFFIX}"
            props[ref] = dict(SECRET_REF_SCHEMA, description=f"The Secret key holding {child.toml}.")
            rules.append(
                {
                    "rule": f"!has(self.{name})",
                    "message": f"{name} is a credential: put it in a Secret and set {ref}: {{name, key}} instead",
                }
            )
    if not path:
        for toml_key, why in {**OWNED_GLOBAL, **OWNED_RUNNER}.items():
            rules.append(
                {"rule": f"!has(self.{camel(toml_key)})", "message": f"{camel(toml_key)} is set by the operator: {why}"}
            )
    out: dict[str, Any] = {"type": "object", "properties": props}
    if rules:
        out["x-kubernetes-validations"] = rules
    return out


Descriptions = Literal["full", "short", "none"]
SHORT_DESCRIPTION = 160


def _shorten(text: str) -> str:
    """The first sentence, at most SHORT_DESCRIPTION characters (cut at a word)."""
    first = re.split(r"(?<=[.;:])\s", text, maxsplit=1)[0].rstrip(".;:")
    if len(first) > SHORT_DESCRIPTION:
        first = first[:SHORT_DESCRIPTION].rsplit(" ", 1)[0] + " ..."
    return first


def _descriptions(node: Any, mode: Descriptions) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("description"), str):
            if mode == "none":
                del node["description"]
            else:
                node["description"] = _shorten(node["description"])
        for key, value in node.items():
            if key != "properties":
                _descriptions(value, mode)
            else:
                for child in value.values():
                    _descriptions(child, mode)
    elif isinstance(node, list):
        for item in node:
            _descriptions(item, mode)


def spec_config_schema(*, descriptions: Descriptions = "full") -> dict[str, Any]:
    """The openAPIV3Schema of spec.config: put it at spec.versions[].schema...properties.spec.properties.config.

    gitlab-runner's help texts are most of the size: "short" keeps their first sentence (what the Runner CRD
    ships, so that client-side `kubectl apply`, whose last-applied annotation is limited to 256 KiB, keeps a wide
    margin), "none" drops them.
    """
    schema = _node(spec_config_key(), (), ())
    if descriptions != "full":
        _descriptions(schema, descriptions)
    schema["description"] = (
        "gitlab-runner's config.toml: the global settings and this runner's [[runners]] entry, in camelCase "
        f"(global keys whose names [[runners]] also uses go under {GLOBAL_SECTION})."
    )
    return schema
