"""The CRD schema and the spec model say the same thing; the Helm chart ships the same CRD bytes."""

from __future__ import annotations

import copy
import dataclasses
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from glrt_operator.core import api
from glrt_operator.runners import model
from glrt_operator.runners.status import RunnerStatus

REPO = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((REPO / "crds" / "runners.glrt.dev.yaml").read_text())
VERSION = CRD["spec"]["versions"][0]
SPEC = VERSION["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]


def test_identity_of_the_resource() -> None:
    assert CRD["metadata"]["name"] == "runners.glrt.dev"
    assert CRD["spec"]["group"] == "glrt.dev" and CRD["spec"]["scope"] == "Namespaced"
    assert CRD["spec"]["names"]["kind"] == "Runner" and CRD["spec"]["names"]["plural"] == "runners"
    assert VERSION["name"] == api.VERSION and VERSION["subresources"] == {"status": {}}
    assert VERSION["served"] and VERSION["storage"]


def test_enums_match_the_model() -> None:
    assert tuple(SPEC["runnerType"]["enum"]) == model.RUNNER_TYPES
    assert tuple(SPEC["accessLevel"]["enum"]) == model.ACCESS_LEVELS
    assert tuple(SPEC["config"]["properties"]["logLevel"]["enum"]) == model.LOG_LEVELS


def test_limits_match_the_model() -> None:
    assert SPEC["description"]["maxLength"] == model.MAX_DESCRIPTION
    assert SPEC["maintenanceNote"]["maxLength"] == model.MAX_MAINTENANCE_NOTE
    assert SPEC["tags"]["maxItems"] == model.MAX_TAGS
    assert SPEC["maximumTimeout"]["minimum"] == model.MIN_MAXIMUM_TIMEOUT
    assert SPEC["replicas"]["maximum"] == model.MAX_REPLICAS
    assert SPEC["maximumTimeout"]["maximum"] == model.MAX_INT32
    assert SPEC["projectId"]["maximum"] == SPEC["groupId"]["maximum"] == model.MAX_ID


def _strings_and_numbers(schema: dict[str, Any], path: str = "spec") -> Iterator[tuple[str, dict[str, Any]]]:
    if schema.get("type") in ("string", "integer"):
        yield path, schema
    for key, sub in (schema.get("properties") or {}).items():
        yield from _strings_and_numbers(sub, f"{path}.{key}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _strings_and_numbers(schema[key], f"{path}[]")


def test_every_string_and_number_is_bounded() -> None:
    """Outside spec.config (its schema is generated from gitlab-runner's keys), every string has a length bound or
    an enum, and every number a minimum."""
    unbounded = [
        path
        for path, schema in _strings_and_numbers(SPEC_SCHEMA)
        if not path.startswith("spec.config")
        and "enum" not in schema
        and not ("maxLength" in schema if schema["type"] == "string" else "minimum" in schema)
    ]
    assert unbounded == []


BASE: dict[str, Any] = {
    "gitlab": {"url": "https://gitlab.example.com", "credentialsSecretRef": {"name": "api"}},
    "runnerType": "instance_type",
    "tags": ["docker"],
}
# Model defaults the CRD deliberately does not repeat, so that they follow the operator's release instead of being
# written into every stored Runner by the apiserver.
OPERATOR_SIDE_DEFAULTS = {
    "manager.image": "the runner image moves with the operator release",
    "manager.image_pull_policy": "follows the image",
    "token_rotation.renew_before": "documented in the field's description; a duration, the model holds a timedelta",
}
# Filled in from the connection spec.gitlab.connectionRef names (`core.connection.resolve`), never parsed.
RESOLVED = {"gitlab.via.kind", "gitlab.via.name", "gitlab.namespace"}
# Fields tied to another by a CEL rule of the CRD: each is compared between two valid whole specs.
TIED: dict[tuple[str, ...], tuple[dict[str, Any], dict[str, Any]]] = {
    ("runnerType",): ({}, {"runnerType": "group_type", "groupId": 8}),
    ("gitlab", "url"): ({}, {"gitlab": {**BASE["gitlab"], "url": "https://other.example.com"}}),
    ("projectId",): ({"runnerType": "project_type", "projectId": 8}, {"runnerType": "project_type", "projectId": 9}),
    ("groupId",): ({"runnerType": "group_type", "groupId": 8}, {"runnerType": "group_type", "groupId": 9}),
}


def _leaves(schema: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every settable leaf of the spec schema: scalars, lists, maps and free-form objects."""
    props = schema.get("properties")
    if schema.get("type") == "object" and props:
        for key, sub in props.items():
            yield from _leaves(sub, (*path, key))
    else:
        yield path, schema


def _sample(schema: dict[str, Any], other: bool = False) -> Any:
    """A valid value for the schema that differs from its default (`other`: a second, different one)."""
    default = schema.get("default")
    if "enum" in schema:
        choices = [v for v in schema["enum"] if v != default]
        return choices[1 if other and len(choices) > 1 else 0]
    kind = schema.get("type")
    if kind == "boolean":
        return not default if default is not None else True
    if kind == "integer":
        return (schema.get("minimum") or 1) + (9 if other else 7)
    if kind == "number":
        return 2.5 if other else 1.5
    if kind is None and schema.get("x-kubernetes-int-or-string"):
        return 9 if other else 7
    if kind is None and schema.get("x-kubernetes-preserve-unknown-fields"):
        return {"sample": "b" if other else "a"}
    if kind == "string":
        pattern = schema.get("pattern", "")
        if pattern.startswith("^https?"):
            return "https://other.example.com" if other else "https://gitlab.example.org"
        if "h)?" in pattern:
            return "5h"
        if "|ms|s|m|h" in pattern:  # a Go duration (spec.config)
            return "9m" if other else "7m"
        if "=" in pattern:
            return "NAME=value"
        return "sample-b" if other else "sample-a"
    if kind == "array":
        return [_sample(schema["items"], other)]
    if kind == "object" and "additionalProperties" in schema:
        value = schema["additionalProperties"]
        return {"key": "1" if value.get("x-kubernetes-int-or-string") else _sample(value, other)}
    if kind == "object" and schema.get("properties"):  # e.g. an item of a list of tables in spec.config
        props = schema["properties"]
        names = [*schema.get("required", []), *(n for n in props if not _refused_by(schema, n))][:2]
        return {n: _sample(props[n], other) for n in dict.fromkeys(names)}
    if kind == "object":  # a free-form object (x-kubernetes-preserve-unknown-fields)
        return {"name": "sample-b" if other else "sample-a", "value": "x"}
    raise AssertionError(f"no sample for {schema}")


def _refused_by(parent: dict[str, Any], name: str) -> str | None:
    """The message of the parent's CEL rule refusing the field `name` (operator-owned keys, plain credentials)."""
    rules = parent.get("x-kubernetes-validations", [])
    return next((r["message"] for r in rules if r["rule"] == f"!has(self.{name})"), None)


def _refused(path: tuple[str, ...]) -> str | None:
    schema = SPEC_SCHEMA
    for key in path[:-1]:
        schema = schema["properties"][key]
    return _refused_by(schema, path[-1])


def _spec_with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """BASE with `path` set, plus the required siblings of each enclosing object (sampled)."""
    spec = copy.deepcopy(BASE)
    if path[:2] == ("gitlab", "connectionRef"):
        spec["gitlab"] = {}  # the CRD's rule: a connectionRef, or url and credentialsSecretRef
    node, schema = spec, SPEC_SCHEMA
    for key in path[:-1]:
        schema = schema["properties"][key]
        node = node.setdefault(key, {})
        for required in schema.get("required", []):
            node.setdefault(required, _sample(schema["properties"][required]))
    if value is None:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return spec


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        found: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            found.update(_flat(getattr(obj, f.name), f"{prefix}{f.name}."))
        return found
    return {prefix.rstrip("."): obj}


def _model_fields(cls: Any, prefix: str = "") -> set[str]:
    """Every leaf field of the model, by type (an optional nested part counts with its fields)."""
    found: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        inner = [t for t in typing.get_args(hints[f.name]) or (hints[f.name],) if dataclasses.is_dataclass(t)]
        found |= _model_fields(inner[0], f"{prefix}{f.name}.") if inner else {prefix + f.name}
    return found


def _changed_by(path: tuple[str, ...], schema: dict[str, Any]) -> set[str]:
    """The model fields that setting this CRD field changes."""
    if path in TIED:
        before, after = (model.RunnerSpec.parse({**BASE, **variant}) for variant in TIED[path])
    elif path[-1] in _enclosing_required(path):  # a required field: compare two different values
        before = model.RunnerSpec.parse(_spec_with(path, _sample(schema, other=True)))
        after = model.RunnerSpec.parse(_spec_with(path, _sample(schema)))
    else:
        before = model.RunnerSpec.parse(_spec_with(path, None))
        after = model.RunnerSpec.parse(_spec_with(path, _sample(schema)))
    old, new = _flat(before), _flat(after)
    return {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}


def _enclosing_required(path: tuple[str, ...]) -> list[str]:
    schema = SPEC_SCHEMA
    for key in path[:-1]:
        schema = schema["properties"][key]
    return list(schema.get("required", []))


SPEC_SCHEMA = VERSION["schema"]["openAPIV3Schema"]["properties"]["spec"]
LEAVES = dict(_leaves(SPEC_SCHEMA))


@pytest.mark.parametrize("path", sorted(LEAVES), ids=".".join)
def test_every_crd_field_reaches_the_model(path: tuple[str, ...]) -> None:
    """A field the CRD accepts but the parser drops would be silently ignored; a field the CRD refuses with a rule
    (an operator-owned key of spec.config, a plain-text credential) the parser refuses with the same message."""
    refused = _refused(path)
    if refused is not None:
        with pytest.raises(model.SpecError, match=re.escape(refused)):
            model.RunnerSpec.parse(_spec_with(path, _sample(LEAVES[path])))
        return
    assert _changed_by(path, LEAVES[path]), f"spec.{'.'.join(path)} is in the CRD but does not change the model"


def test_every_model_field_is_in_the_crd() -> None:
    reached = set().union(*(_changed_by(path, schema) for path, schema in LEAVES.items() if not _refused(path)))
    missing = _model_fields(model.RunnerSpec) - reached - RESOLVED
    assert not missing, f"model fields no CRD field sets: {sorted(missing)}"


@pytest.mark.parametrize("path", sorted(p for p, s in LEAVES.items() if "default" in s), ids=".".join)
def test_crd_defaults_are_the_model_defaults(path: tuple[str, ...]) -> None:
    """What the apiserver fills in parses to what the operator assumes when the field is absent."""
    absent = model.RunnerSpec.parse(_spec_with(path, None))
    filled = model.RunnerSpec.parse(_spec_with(path, LEAVES[path]["default"]))
    assert filled == absent, f"spec.{'.'.join(path)}: CRD default {LEAVES[path]['default']!r} differs from the model"


def test_model_defaults_the_crd_does_not_show_are_deliberate() -> None:
    """A model default with no CRD default is invisible to `kubectl explain`: allowed only when listed, with a
    reason. Listed ones must still be model defaults (the list cannot go stale)."""
    absent = _flat(model.RunnerSpec.parse(BASE))
    shown: set[str] = set()
    for path, schema in LEAVES.items():
        if "default" in schema:
            shown |= _changed_by(path, schema)
    hidden = {
        name
        for name, value in absent.items()
        if value not in (None, "", (), {}, False, 0) and name not in shown and not name.startswith("gitlab.")
    } - {"runner_type", "settings.tags", "settings.run_untagged"}
    assert hidden == set(OPERATOR_SIDE_DEFAULTS), "model defaults the CRD does not declare"


def test_spec_config_has_no_crd_defaults() -> None:
    """spec.config's defaults are the operator's (model.CONFIG_DEFAULTS, filled in at render time): a CRD default
    would be written into every stored Runner, and the operator could no longer tell "unset" from "set"."""
    defaults = [path for path, schema in LEAVES.items() if path[0] == "config" and "default" in schema]
    assert defaults == []
    assert model.RunnerSpec.parse(BASE).config.effective() == dict(model.CONFIG_DEFAULTS)


def test_printer_columns() -> None:
    columns = [c["name"] for c in VERSION["additionalPrinterColumns"]]
    assert columns[:3] == ["Runner ID", "Type", "Replicas"]
    assert {"Token Expires", "Ready", "Age"} <= set(columns)


def test_status_declares_what_the_operator_writes() -> None:
    status = VERSION["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    written = RunnerStatus.patch(**vars(RunnerStatus()))
    for field in written:  # an undeclared field would be pruned by the apiserver, silently
        assert field in status, field
    assert {"ordinal", "pod", "systemId", "managerStatus", "contactedAt", "version"} <= set(
        status["replicas"]["items"]["properties"]
    )
