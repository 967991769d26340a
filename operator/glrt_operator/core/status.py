"""What every typed status shares: a frozen dataclass whose field names are the snake_case of the CRD's status
properties, read from `body["status"]` and written as a patch by one mapping."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, Self


def camel(name: str) -> str:
    """A field name as the CRD spells it: `token_expires_at` -> `tokenExpiresAt`."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class TypedStatus:
    """Mixed into a frozen dataclass of status fields. `LIST_FIELDS` are lists of objects; they and lists of plain
    values are kept as tuples."""

    LIST_FIELDS: ClassVar[frozenset[str]] = frozenset({"conditions"})

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> Self:
        """From `body["status"]`; unknown keys (another version's, Kopf's own) are ignored."""
        raw = raw or {}
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            value = raw.get(camel(f.name))
            if value is None:
                continue
            if f.name in cls.LIST_FIELDS:
                value = tuple(dict(v) for v in value)
            elif isinstance(value, list):
                value = tuple(value)  # a list of plain values, kept as a tuple like the lists of objects
            values[f.name] = value
        return cls(**values)

    @classmethod
    def patch(cls, **changes: Any) -> dict[str, Any]:
        """The status patch for `changes` (snake_case field names; None clears a field): the one place that maps
        fields to their CRD names, used both for writes at once and for the handler's end-of-call patch."""
        unknown = changes.keys() - {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        if unknown:
            raise TypeError(f"not {cls.__name__} fields: {sorted(unknown)}")
        return {camel(k): list(v) if isinstance(v, tuple) else v for k, v in changes.items()}

    def updated(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _without(value: Any, volatile: frozenset[str]) -> Any:
    if isinstance(value, Mapping):
        return {k: _without(v, volatile) for k, v in value.items() if k not in volatile}
    if isinstance(value, (list, tuple)):
        return [_without(v, volatile) for v in value]
    return value


def changes_anything(patch: Mapping[str, Any], current: Mapping[str, Any], volatile: frozenset[str]) -> bool:
    """Would writing `patch` over the stored `current` status change a value a user would act on? Keys named in
    `volatile` (e.g. a runner manager's `contactedAt`, which moves with every poll of the runner) are left out of
    the comparison, not out of the write: they are written with the next real change."""
    return any(_without(v, volatile) != _without(current.get(k), volatile) for k, v in patch.items())
