from __future__ import annotations

from glrt_operator.core.gitlab import RunnerManager
from glrt_operator.core.ports import PodInfo
from glrt_operator.runners.builders import ANNOTATION_CONFIG_VERSION, system_id
from glrt_operator.runners.replicas import pods_to_refresh, replica_statuses, stray_managers

UID = "3f0e7a2c-2222-4000-8000-000000000000"


def manager(sid: str, status: str = "online") -> RunnerManager:
    return RunnerManager(id=1, system_id=sid, status=status, contacted_at="2026-11-22T10:00:00.000Z", version="19.4.0")


def test_every_replica_is_listed_with_its_manager_or_none() -> None:
    entries = replica_statuses("builds", UID, 3, [manager(system_id(UID, 1))])
    assert [e["ordinal"] for e in entries] == [0, 1, 2]
    assert [e["pod"] for e in entries] == ["builds-0", "builds-1", "builds-2"]
    assert [e["systemId"] for e in entries] == [system_id(UID, i) for i in range(3)]
    assert [e["managerStatus"] for e in entries] == ["not_registered", "online", "not_registered"]
    assert entries[1]["version"] == "19.4.0" and entries[1]["contactedAt"] == "2026-11-22T10:00:00.000Z"
    # No nulls: a key without a value is left out of the status patch.
    assert set(entries[0]) == {"ordinal", "pod", "systemId", "managerStatus"}
    assert not any("draining" in e for e in entries)


def pod(name: str, terminating: bool = False, version: str | None = None) -> PodInfo:
    return PodInfo(name, terminating, {ANNOTATION_CONFIG_VERSION: version} if version else {})


def test_a_stopping_pod_and_a_scaled_away_pod_show_as_draining() -> None:
    pods = [pod("builds-0"), pod("builds-1", terminating=True), pod("builds-2"), pod("builds-10", True)]
    entries = replica_statuses("builds", UID, 2, [manager(system_id(UID, 2))], pods)
    assert [(e["ordinal"], e.get("draining", False)) for e in entries] == [(0, False), (1, True), (2, True), (10, True)]
    assert entries[2]["managerStatus"] == "online"  # its manager stays until the pod is gone
    # Another Runner's pods ("builds-x-0") are not ours.
    assert len(replica_statuses("builds", UID, 1, [], [pod("builds-x-0", True)])) == 1


def test_pods_to_refresh_after_a_write_are_the_running_ones_not_told_about_this_config_version() -> None:
    pods = [pod("builds-0", version="7"), pod("builds-1", version="6"), pod("builds-2"), pod("builds-3", True, "6")]
    assert pods_to_refresh(pods, "7", written=True) == ["builds-1", "builds-2"]
    assert pods_to_refresh([pod("builds-0", version="7")], "7", written=True) == []


def test_pods_to_refresh_at_rest_are_only_those_a_refresh_missed() -> None:
    # builds-2 started after the Secret was last written: it mounted this version, so it costs no write.
    pods = [pod("builds-0", version="7"), pod("builds-1", version="6"), pod("builds-2"), pod("builds-3", True, "6")]
    assert pods_to_refresh(pods, "7", written=False) == ["builds-1"]


def test_stray_managers_split_into_scaled_away_and_unknown() -> None:
    current = manager(system_id(UID, 0))
    gone = manager(system_id(UID, 2))
    other_runner = manager(system_id("another-uid", 0))
    legacy = manager("<legacy>")
    stray = stray_managers(UID, 1, [current, gone, other_runner, legacy])
    assert stray.scaled_away == {2: gone}
    assert stray.unknown == [other_runner, legacy]


def test_nothing_is_stray_when_every_manager_backs_a_replica() -> None:
    stray = stray_managers(UID, 2, [manager(system_id(UID, 0)), manager(system_id(UID, 1))])
    assert stray.scaled_away == {} and stray.unknown == []
