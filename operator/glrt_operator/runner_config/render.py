"""spec.config (validated by the CRD schema) -> the config.toml document, for tomli_w. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from glrt_operator.runner_config.keys import GLOBAL_SECTION, Key, global_key, is_global, runner_key, spec_config_key
from glrt_operator.runner_config.schema import SECRET_REF_SUFFIX

TomlPath = tuple[str, ...]


class RenderError(ValueError):
    """spec.config names a key gitlab-runner does not know or gives it a value of the wrong shape."""


def _value(key: Key, value: Any, path: str, toml_path: TomlPath, credentials: Mapping[TomlPath, str]) -> Any:
    if key.kind == "object":
        if not isinstance(value, Mapping):
            raise RenderError(f"{path}: expected an object")
        return _table(key, value, path, toml_path, credentials)
    if key.kind == "array":
        assert key.items is not None
        if not isinstance(value, list):
            raise RenderError(f"{path}: expected a list")
        return [_value(key.items, v, f"{path}[{i}]", toml_path, credentials) for i, v in enumerate(value)]
    if key.kind == "map":
        assert key.values is not None
        if not isinstance(value, Mapping):
            raise RenderError(f"{path}: expected a map")
        return {str(k): _value(key.values, v, f"{path}.{k}", toml_path, credentials) for k, v in sorted(value.items())}
    if key.kind == "string-or-array" and isinstance(value, str):
        return [value]
    return value


def _table(
    key: Key, obj: Mapping[str, Any], path: str, toml_path: TomlPath, credentials: Mapping[TomlPath, str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in sorted(obj.items()):  # sorted: the same spec always gives the same bytes
        if name.endswith(SECRET_REF_SUFFIX) and name[: -len(SECRET_REF_SUFFIX)] in key.fields:
            secret_path = (*toml_path, key.fields[name[: -len(SECRET_REF_SUFFIX)]].toml)
            if secret_path not in credentials:
                raise RenderError(f"{path}.{name}: the Secret value was not resolved")
            out[secret_path[-1]] = credentials[secret_path]
            continue
        child = key.fields.get(name)
        if child is None:
            raise RenderError(f"{path}.{name}: gitlab-runner has no such setting")
        if value is None:
            continue
        out[child.toml] = _value(child, value, f"{path}.{name}", (*toml_path, child.toml), credentials)
    return out


def render_document(
    config: Mapping[str, Any],
    *,
    owned_global: Mapping[str, Any],
    owned_runner: Mapping[str, Any],
    credentials: Mapping[TomlPath, str] | None = None,
) -> dict[str, Any]:
    """The whole config.toml document: every given key, plus the keys the operator owns (which win).

    `credentials` maps a [[runners]]-relative TOML path (e.g. ("cache", "s3", "AccessKey")) to the value read from
    the Secret the spec references, or to the mounted file's path (see credentials.py).
    """
    creds = credentials or {}
    spec_key = spec_config_key()
    glob: dict[str, Any] = {}
    runner: dict[str, Any] = {}
    for name, value in sorted(config.items()):
        if name == GLOBAL_SECTION:
            glob.update(_table(spec_key.fields[GLOBAL_SECTION], value, "spec.config.global", (), {}))
        elif is_global(name):
            glob.update(_table(global_key(), {name: value}, "spec.config", (), {}))
        else:
            runner.update(_table(runner_key(), {name: value}, "spec.config", (), creds))
    # The operator's keys first (and winning), then the executor, then the rest in key order.
    entry = {**owned_runner, "executor": runner.pop("executor", "kubernetes")}
    entry.update({k: v for k, v in sorted(runner.items()) if k not in owned_runner})
    document = {k: v for k, v in sorted(glob.items()) if k not in owned_global}
    document.update(owned_global)
    document["runners"] = [entry]
    return document
