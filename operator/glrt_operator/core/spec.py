"""Reading a resource's spec into a typed model: field getters that name the field to fix, shared by every
resource's parser. Errors are `SpecError`s: permanent, fixed by editing the spec."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from . import durations
from .objects import is_subdomain_name


class SpecError(ValueError):
    """The spec cannot be acted on; the message says which field to fix and how."""


def get_field(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: str, default: Any = None) -> Any:
    """`obj[key]` when it has the type `kind`, `default` when absent or null; SpecError naming `path.key` else."""
    value = obj.get(key, default)
    if value is None:
        return default
    # bool is an int in Python; never accept True where a number is asked for.
    if isinstance(value, bool) and kind in (int, (int,)):
        raise SpecError(f"{path}.{key}: expected a number, got {value!r}")
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise SpecError(f"{path}.{key}: expected {expected}, got {type(value).__name__}")
    return value


def str_map(value: Any, path: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise SpecError(f"{path}: expected a map of strings")
    return {str(k): v for k, v in value.items()}


def parse_duration(value: str, field_name: str) -> timedelta:
    """Parse `72h`, `90m`, `1h30m`, `45s`; SpecError naming `field_name` otherwise."""
    try:
        return durations.parse_duration(value)
    except ValueError as exc:
        raise SpecError(f"{field_name}: {exc}") from None


def duration(obj: Mapping[str, Any], key: str, path: str, default: timedelta, *, allow_zero: bool = False) -> timedelta:
    """A duration field (`72h`), `default` when absent; it must be longer than zero unless `allow_zero`."""
    raw = get_field(obj, key, str, path)
    if raw is None:
        return default
    value = parse_duration(raw, f"{path}.{key}")
    if value == timedelta(0) and not allow_zero:
        raise SpecError(f"{path}.{key}: must be longer than zero")
    return value


@dataclass(frozen=True)
class SecretKeyRef:
    """A key of a Secret in the resource's namespace."""

    name: str
    key: str


def secret_ref(obj: Mapping[str, Any], key: str, path: str, default_key: str) -> SecretKeyRef | None:
    """A `{name, key}` reference to a Secret; None when absent."""
    ref = get_field(obj, key, Mapping, path)
    if ref is None:
        return None
    name = get_field(ref, "name", str, f"{path}.{key}", "")
    if not is_subdomain_name(name):
        raise SpecError(f"{path}.{key}.name: {name!r} is not a Secret name")
    return SecretKeyRef(name=name, key=get_field(ref, "key", str, f"{path}.{key}", default_key))
