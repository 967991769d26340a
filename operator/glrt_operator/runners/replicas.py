"""Which GitLab runner manager backs which replica (pure): the status entries, and the managers to remove."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..core.gitlab import RunnerManager
from ..core.ports import PodInfo
from .builders import ANNOTATION_CONFIG_VERSION, system_id
from .model import MAX_REPLICAS
from .status import ReplicaStatus


@dataclass(frozen=True)
class StrayManagers:
    """Managers no current replica backs: those of replicas scaled away (by ordinal), and unknown ones."""

    scaled_away: dict[int, RunnerManager]
    unknown: list[RunnerManager]


def _ordinal(runner_name: str, pod_name: str) -> int | None:
    suffix = pod_name.removeprefix(f"{runner_name}-")
    return int(suffix) if suffix != pod_name and suffix.isdigit() else None


def replica_statuses(
    runner_name: str,
    runner_uid: str,
    replicas: int,
    managers: Iterable[RunnerManager],
    pods: Iterable[PodInfo] = (),
) -> list[ReplicaStatus]:
    """One `status.replicas[]` entry per replica, with what GitLab knows of its manager; plus one per scaled-away
    replica whose pod still drains. A stopping pod is `draining`."""
    by_id = {m.system_id: m for m in managers}
    stopping: Mapping[int, bool] = {o: p.terminating for p in pods if (o := _ordinal(runner_name, p.name)) is not None}
    ordinals = sorted(set(range(replicas)) | {o for o in stopping if o >= replicas})
    entries: list[ReplicaStatus] = []
    for ordinal in ordinals:
        sid = system_id(runner_uid, ordinal)
        manager = by_id.get(sid)
        entry: ReplicaStatus = {
            "ordinal": ordinal,
            "pod": f"{runner_name}-{ordinal}",
            "systemId": sid,
            "managerStatus": (manager.status if manager else None) or "not_registered",
        }
        if manager and manager.contacted_at:
            entry["contactedAt"] = manager.contacted_at
        if manager and manager.version:
            entry["version"] = manager.version
        # A scaled-away replica's pod is on its way out even before the controller marked it.
        if stopping.get(ordinal) or ordinal >= replicas:
            entry["draining"] = True
        entries.append(entry)
    return entries


def pods_to_refresh(pods: Iterable[PodInfo], config_version: str, *, written: bool) -> list[str]:
    """The running pods that may hold an older copy of the config Secret (see `children.refresh_pods`).

    Just `written`: every one not yet told about this version. Otherwise only those told about an older one (a
    refresh cut short): a pod started after the last write mounted that version, so a resync at rest writes none."""
    return [
        p.name
        for p in pods
        if not p.terminating
        and (version := p.annotations.get(ANNOTATION_CONFIG_VERSION)) != config_version
        and (written or version is not None)
    ]


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
