"""Reading an object's conditions the way a user's tooling does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def condition(body: Mapping[str, Any], type_: str = "Ready") -> dict[str, Any]:
    conditions = (body.get("status") or {}).get("conditions") or []
    return next((dict(c) for c in conditions if c.get("type") == type_), {})


def ready_for_generation(body: Mapping[str, Any]) -> bool:
    """Ready=True for the object's current generation. While an edit is reconciled, `status.observedGeneration`
    already names the new generation (with Reconciling=True) and the Ready=True kept from the previous one still
    carries that one's `observedGeneration`: only its own generation on the Ready condition says the edit is done."""
    ready = condition(body)
    generation = body["metadata"].get("generation")
    return ready.get("status") == "True" and ready.get("observedGeneration") == generation
