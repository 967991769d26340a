from __future__ import annotations

from glrt_operator.adapters.gitlab import RunnerManager
from glrt_operator.runners.builders import system_id
from glrt_operator.runners.replicas import replica_statuses, stray_managers

UID = "3f0e7a2c-2222-4000-8000-000000000000"


def manager(sid: str, status: str = "online") -> RunnerManager:
    return RunnerManager(id=1, system_id=sid, status=status, contacted_at="2026-11-22T10:00:00.000Z", version="19.4.0")


def test_every_replica_is_listed_with_its_manager_or_none() -> None:
    entries = replica_statuses("builds", UID, 3, [manager(system_id(UID, 1))])
    assert [e["ordinal"] for e in entries] == [0, 1, 2]
    assert [e["pod"] for e in entries] == ["builds-0", "builds-1", "builds-2"]
    assert [e["systemId"] for e in entries] == [system_id(UID, i) for i in range(3)]
    assert [e["managerStatus"] for e in entries] == ["not_registered", "online", "not_registered"]
    assert entries[1]["version"] == "19.4.0" and entries[0]["contactedAt"] is None


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
