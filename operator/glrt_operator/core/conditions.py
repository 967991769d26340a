"""Status conditions: one helper, so `lastTransitionTime` moves only when a condition's status really changes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypedDict, cast

from .reasons import ConditionType, Reason
from .times import now_iso

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(TypedDict):
    """A status condition as Kubernetes' API conventions shape it (metav1.Condition)."""

    type: str
    status: ConditionStatus
    reason: str
    message: str
    observedGeneration: int | None
    lastTransitionTime: str | None


def set_condition(
    conditions: Iterable[Mapping[str, Any]] | None,
    type_: ConditionType,
    status: ConditionStatus,
    reason: Reason | str,
    message: str,
    generation: int | None,
    now: str | None = None,
) -> list[Condition]:
    """Return the conditions with `type_` set; the others are kept in their order."""
    result = [cast(Condition, dict(c)) for c in conditions or ()]
    previous = next((c for c in result if c.get("type") == type_), None)
    changed = previous is None or previous.get("status") != status
    updated: Condition = {
        "type": str(type_),
        "status": status,
        "reason": str(reason),
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": (now or now_iso()) if changed else previous.get("lastTransitionTime"),  # type: ignore[union-attr]
    }
    if previous is None:
        result.append(updated)
    else:
        result[result.index(previous)] = updated
    return result


def reconciled_generation(status: Mapping[str, Any]) -> int | None:
    """The generation last reconciled successfully. `observedGeneration` follows every status write, failures
    included, so it cannot tell; a status written before `reconciledGeneration` existed says it with Ready=True."""
    if "reconciledGeneration" in status:
        return cast(int | None, status["reconciledGeneration"])
    ready: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or () if c.get("type") == ConditionType.READY), {}
    )
    if ready.get("status") != "True":
        return None
    return cast(int | None, ready.get("observedGeneration", status.get("observedGeneration")))
