"""GitLab runner managers no replica backs: a scaled-away replica's (once its pod is gone) and unknown ones."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.events import EventType
from ..core.gitlab import RunnerManager
from ..core.reasons import EventReason
from . import batch
from .context import RunnerContext
from .replicas import stray_managers
from .rotation import TokenState


@dataclass(frozen=True)
class _Removal:
    manager: RunnerManager
    event_type: EventType
    reason: EventReason
    which: str


def remove_stray_managers(ctx: RunnerContext, token: TokenState, managers: list[RunnerManager]) -> list[RunnerManager]:
    """Delete the managers no replica backs; returns the managers that remain."""
    ref = ctx.ref
    stray = stray_managers(ref.uid, ctx.spec.replicas, managers)
    doomed = [
        _Removal(manager, "Normal", EventReason.MANAGER_REMOVED, f"of scaled-away replica {ordinal}")
        for ordinal, manager in sorted(stray.scaled_away.items())
        # A pod still stopping may contact GitLab once more: wait until it is gone.
        if not ctx.kube.pod_exists(ref.namespace, f"{ref.name}-{ordinal}")
    ]
    doomed += [
        _Removal(m, "Warning", EventReason.UNKNOWN_MANAGER_REMOVED, "that belongs to no replica") for m in stray.unknown
    ]
    removed: set[str] = set()
    for r in doomed:
        ctx.gitlab.delete_manager(token.token, r.manager.system_id)
        batch.manager_removed(ctx, ctx.status.runner_id or 0, r.manager.system_id)
        removed.add(r.manager.system_id)
        ctx.emit(r.event_type, r.reason, f"Removed runner manager {r.manager.system_id} {r.which}")
    return [m for m in managers if m.system_id not in removed]
