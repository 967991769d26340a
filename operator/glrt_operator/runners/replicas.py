"""Which GitLab runner manager backs which replica (pure): the status entries, and the managers to remove."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..adapters.gitlab import RunnerManager
from .builders import system_id
from .model import MAX_REPLICAS
from .status import ReplicaStatus


@dataclass(frozen=True)
class StrayManagers:
    """Managers no current replica backs: those of replicas scaled away (by ordinal), and unknown ones."""

    scaled_away: dict[int, RunnerManager]
    unknown: list[RunnerManager]


def replica_statuses(
    runner_name: str, runner_uid: str, replicas: int, managers: Iterable[RunnerManager]
) -> list[ReplicaStatus]:
    """One `status.replicas[]` entry per replica, with what GitLab knows of its manager."""
    by_id = {m.system_id: m for m in managers}
    entries: list[ReplicaStatus] = []
    for ordinal in range(replicas):
        sid = system_id(runner_uid, ordinal)
        manager = by_id.get(sid)
        entries.append(
            {
                "ordinal": ordinal,
                "pod": f"{runner_name}-{ordinal}",
                "systemId": sid,
                "managerStatus": manager.status if manager else "not_registered",
                "contactedAt": manager.contacted_at if manager else None,
                "version": manager.version if manager else None,
            }
        )
    return entries


def stray_managers(runner_uid: str, replicas: int, managers: Iterable[RunnerManager]) -> StrayManagers:
    ordinal_of = {system_id(runner_uid, i): i for i in range(MAX_REPLICAS)}
    scaled_away: dict[int, RunnerManager] = {}
    unknown: list[RunnerManager] = []
    for manager in managers:
        ordinal = ordinal_of.get(manager.system_id)
        if ordinal is None:
            unknown.append(manager)
        elif ordinal >= replicas:
            scaled_away[ordinal] = manager
    return StrayManagers(scaled_away=scaled_away, unknown=unknown)
