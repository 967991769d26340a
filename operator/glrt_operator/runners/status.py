"""The typed status of a `Runner`, and the one way to turn changes of it into a status patch.

Field names are the snake_case of the CRD's status properties (a test checks that the CRD declares every one:
the apiserver would silently prune an undeclared field).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from ..core.conditions import Condition


class ReplicaStatus(TypedDict):
    """One `status.replicas[]` entry: a replica and what GitLab knows of its runner manager."""

    ordinal: int
    pod: str
    systemId: str
    managerStatus: str | None
    contactedAt: str | None
    version: str | None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True)
class RunnerStatus:
    observed_generation: int | None = None
    runner_id: int | None = None
    # Fence of `POST /user/runners`: set just before it, cleared once the runner is recorded.
    creation_started_at: str | None = None
    # Fence of a token reset: set just before it, cleared once the new token is stored.
    rotation_started_at: str | None = None
    # The spec.tokenRotation.requestedAt last acted on.
    rotation_requested_at: str | None = None
    token_rotated_at: str | None = None
    token_secret_name: str | None = None
    config_secret_name: str | None = None
    token_expires_at: str | None = None
    ready_replicas: int | None = None
    replicas: tuple[ReplicaStatus, ...] = ()
    conditions: tuple[Condition, ...] = ()

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> RunnerStatus:
        """From `body["status"]`; unknown keys (another version's, Kopf's own) are ignored."""
        raw = raw or {}
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            value = raw.get(_camel(f.name))
            if value is None:
                continue
            values[f.name] = tuple(dict(v) for v in value) if f.name in ("replicas", "conditions") else value
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Every field, by its CRD name."""
        return self.patch(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    @staticmethod
    def patch(**changes: Any) -> dict[str, Any]:
        """The status patch for `changes` (snake_case field names; None clears a field): the one place that maps
        fields to their CRD names, used both for writes at once and for the handler's end-of-call patch."""
        names = {f.name for f in dataclasses.fields(RunnerStatus)}
        unknown = changes.keys() - names
        if unknown:
            raise TypeError(f"not RunnerStatus fields: {sorted(unknown)}")
        return {_camel(k): list(v) if isinstance(v, tuple) else v for k, v in changes.items()}

    def updated(self, **changes: Any) -> RunnerStatus:
        return dataclasses.replace(self, **changes)
