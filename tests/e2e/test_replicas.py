"""One stable system_id per replica, tracked as GitLab runner managers; stray managers removed."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest
from kubernetes import client

from tests.e2e.conftest import Runners
from tests.fake_gitlab import FakeGitLab
from tests.harness.operator import OperatorProcess
from tests.harness.runner_pod import VERSION, EmulatedRunnerPod
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster
SYSTEM_ID = re.compile(r"^[sr]_[0-9a-zA-Z]{12}$")


@pytest.fixture
def pods(kube: client.ApiClient, runners: Runners) -> Iterator[dict[int, EmulatedRunnerPod]]:
    started: dict[int, EmulatedRunnerPod] = {}
    yield started
    for pod in started.values():
        pod.stop()


def start_pod(pods: dict[int, EmulatedRunnerPod], kube: client.ApiClient, runners: Runners, ordinal: int) -> None:
    pods[ordinal] = EmulatedRunnerPod(kube, runners.namespace, "builds-runner-config", ordinal).start()


def managers(gitlab: FakeGitLab, runner_id: int) -> set[str]:
    return set(gitlab.runners[runner_id].managers)


def test_each_replica_has_its_own_stable_system_id(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    runners.create(runners.manifest(replicas=3))
    status = runners.wait_ready()["status"]
    ids = [r["systemId"] for r in status["replicas"]]
    assert [r["ordinal"] for r in status["replicas"]] == [0, 1, 2]
    assert [r["pod"] for r in status["replicas"]] == ["builds-0", "builds-1", "builds-2"]
    assert len(set(ids)) == 3 and all(SYSTEM_ID.match(i) for i in ids)
    files = runners.secret_data("builds-runner-config")
    assert [files[f"system-id-{i}"].strip() for i in range(3)] == ids

    operator.stop()
    operator.start()
    wait_for(lambda: runners.get()["status"]["replicas"] == status["replicas"], timeout=20)

    # A Runner re-created under the same name gets new identities.
    runners.delete()
    wait_for(lambda: not runners.exists(), timeout=30)
    runners.create(runners.manifest(replicas=3))
    again = [r["systemId"] for r in runners.wait_ready()["status"]["replicas"]]
    assert not set(again) & set(ids)


def test_pods_show_up_as_managers_in_the_status(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess, kube: client.ApiClient, pods: dict
) -> None:
    runners.create(runners.manifest(replicas=3))
    status = runners.wait_ready()["status"]
    runner_id = status["runnerId"]
    for ordinal in (0, 1, 2):
        start_pod(pods, kube, runners, ordinal)
    wait_for(lambda: len(managers(gitlab, runner_id)) == 3, timeout=10)
    assert managers(gitlab, runner_id) == {r["systemId"] for r in status["replicas"]}

    def all_online() -> list[dict] | None:
        replicas = runners.get()["status"]["replicas"]
        return replicas if all(r["managerStatus"] == "online" for r in replicas) else None

    replicas = wait_for(all_online, timeout=30, message="managers online in the status")
    for entry in replicas:
        assert entry["version"] == VERSION and entry["contactedAt"]
    print("\nstatus.replicas:", json.dumps(replicas, indent=1))

    # A replica restarted (new pod, same ordinal) keeps its id: no new manager.
    pods.pop(0).stop()
    start_pod(pods, kube, runners, 0)
    wait_for(lambda: len(pods[0].polls) >= 3, timeout=10)
    assert len(managers(gitlab, runner_id)) == 3


def test_scale_down_removes_the_managers_of_gone_replicas(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess, kube: client.ApiClient, pods: dict
) -> None:
    runners.create(runners.manifest(replicas=3))
    status = runners.wait_ready()["status"]
    runner_id, ids = status["runnerId"], [r["systemId"] for r in status["replicas"]]
    for ordinal in range(3):
        start_pod(pods, kube, runners, ordinal)
    wait_for(lambda: len(managers(gitlab, runner_id)) == 3, timeout=10)

    runners.patch_spec(replicas=1)
    for ordinal in (1, 2):
        pods.pop(ordinal).stop()
    wait_for(lambda: managers(gitlab, runner_id) == {ids[0]}, timeout=40, message="one manager left")
    # A scaled-away replica stays listed (draining) while its pod exists; the status follows at the handler's end.
    wait_for(
        lambda: [r["ordinal"] for r in runners.wait_ready()["status"]["replicas"]] == [0],
        timeout=20,
        message="status lists replica 0 only",
    )
    # Kopf posts Events asynchronously, after the handler returned: wait for them, then check there are exactly two.
    wait_for(lambda: runners.event_reasons().count("ManagerRemoved") >= 2, timeout=10, message="ManagerRemoved x2")
    assert runners.event_reasons().count("ManagerRemoved") == 2


def test_managers_of_no_replica_are_removed(runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess) -> None:
    runners.create(runners.manifest(replicas=1))
    runner_id = runners.wait_ready()["status"]["runnerId"]
    token = runners.secret_data("builds-runner-token")["token"]
    # A pod that made up its own id (as gitlab-runner does without a seeded .runner_system_id).
    response = httpx.post(f"{gitlab.api_url}/jobs/request", json={"token": token, "system_id": "r_madeUpByPod1"})
    assert response.status_code == 204
    assert "r_madeUpByPod1" in managers(gitlab, runner_id)
    wait_for(lambda: "r_madeUpByPod1" not in managers(gitlab, runner_id), timeout=30, message="stray removed")
    wait_for(lambda: "UnknownManagerRemoved" in runners.event_reasons(), timeout=10, message="UnknownManagerRemoved")
