"""The typed status: one mapping between fields and the CRD's names, both ways."""

from __future__ import annotations

import pytest

from glrt_operator.runners.status import RunnerStatus

STORED = {
    "observedGeneration": 3,
    "runnerId": 12,
    "rotationStartedAt": "2026-11-22T10:00:00Z",
    "replicas": [{"ordinal": 0, "pod": "b-0", "systemId": "r_x", "managerStatus": "online"}],
    "conditions": [{"type": "Ready", "status": "True"}],
    "somethingNewer": "ignored",
}


def test_reads_the_stored_status_and_writes_it_back_by_the_same_names() -> None:
    status = RunnerStatus.from_dict(STORED)
    assert status.runner_id == 12 and status.rotation_started_at == "2026-11-22T10:00:00Z"
    assert status.replicas[0]["systemId"] == "r_x" and status.conditions[0]["type"] == "Ready"
    written = RunnerStatus.patch(**vars(status))
    assert {k: v for k, v in written.items() if v not in (None, [])} == {
        k: v for k, v in STORED.items() if k != "somethingNewer"
    }
    assert RunnerStatus.from_dict(written) == status
    assert RunnerStatus.from_dict(None) == RunnerStatus()


def test_a_patch_names_fields_as_the_crd_does_and_none_clears() -> None:
    assert RunnerStatus.patch(creation_started_at=None, token_rotated_at="t") == {
        "creationStartedAt": None,
        "tokenRotatedAt": "t",
    }
    with pytest.raises(TypeError, match="runnerID"):
        RunnerStatus.patch(runnerID=1)
    assert RunnerStatus().updated(runner_id=5).runner_id == 5
