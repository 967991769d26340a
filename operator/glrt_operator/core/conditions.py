"""Status conditions: one helper, so `lastTransitionTime` moves only when a condition's status really changes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict, cast

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(TypedDict):
    """A status condition as Kubernetes' API conventions shape it (metav1.Condition)."""

    type: str
    status: ConditionStatus
    reason: str
    message: str
    observedGeneration: int | None
    lastTransitionTime: str | None


TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # Kubernetes' timestamp form (RFC 3339, UTC, seconds)


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime(TIME_FORMAT) if value else None


def now_iso() -> str:
    return datetime.now(UTC).strftime(TIME_FORMAT)


def set_condition(
    conditions: Iterable[Mapping[str, Any]] | None,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: str | None = None,
) -> list[Condition]:
    """Return the conditions with `type_` set; the others are kept in their order."""
    result = [cast(Condition, dict(c)) for c in conditions or ()]
    previous = next((c for c in result if c.get("type") == type_), None)
    changed = previous is None or previous.get("status") != status
    updated: Condition = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": (now or now_iso()) if changed else previous.get("lastTransitionTime"),  # type: ignore[union-attr]
    }
    if previous is None:
        result.append(updated)
    else:
        result[result.index(previous)] = updated
    return result


def get_condition(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == type_), None)
