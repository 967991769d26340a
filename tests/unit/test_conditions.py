from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from glrt_operator.core.conditions import set_condition


def get_condition(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def test_new_condition_gets_a_transition_time() -> None:
    conditions = set_condition([], "Ready", "False", "Creating", "creating", 1, now="2026-01-01T00:00:00Z")
    assert conditions == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "Creating",
            "message": "creating",
            "observedGeneration": 1,
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    ]


def test_transition_time_moves_only_when_status_changes() -> None:
    first = set_condition([], "Ready", "False", "A", "a", 1, now="2026-01-01T00:00:00Z")
    same = set_condition(first, "Ready", "False", "B", "b", 2, now="2026-01-02T00:00:00Z")
    assert get_condition(same, "Ready") is not None
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert same[0]["reason"] == "B" and same[0]["observedGeneration"] == 2
    flipped = set_condition(same, "Ready", "True", "Reconciled", "ok", 2, now="2026-01-03T00:00:00Z")
    assert flipped[0]["lastTransitionTime"] == "2026-01-03T00:00:00Z"


def test_other_conditions_are_kept_in_order() -> None:
    conditions = set_condition([], "Registered", "True", "Created", "", 1)
    conditions = set_condition(conditions, "Ready", "True", "Reconciled", "", 1)
    conditions = set_condition(conditions, "Registered", "False", "Missing", "", 2)
    assert [c["type"] for c in conditions] == ["Registered", "Ready"]
    assert get_condition(conditions, "TokenValid") is None
