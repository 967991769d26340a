"""Two operator replicas with leader election (`--leader-election NS/NAME`, the chart's default of two replicas),
as real processes against the real API server and the fake GitLab: SIGKILL of the active one at a chosen moment,
the standby takes over (the time is measured and printed), and GitLab ends with exactly one runner per Runner, no
token rotated, no call made with a revoked token.

Control plane only: the operator's pods are not needed to show who acts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.e2e.conftest import Runners, assert_no_secrets, assert_same_token, reads_of
from tests.fake_gitlab import FakeGitLab, Fault
from tests.harness.controlplane import ControlPlane
from tests.harness.operator import OperatorProcess
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster

LEASE = "glrt-operator"
TAKEOVER_LIMIT = 15.0  # seconds, from the SIGKILL to the standby's watch streams open (issue #25)


class Replica(OperatorProcess):
    def __init__(self, control_plane: ControlPlane, namespace: str, log_dir: Path, identity: str):
        super().__init__(control_plane.kubeconfig, namespace, log_dir, {"POD_NAME": identity})
        self.identity = identity
        self.args += ["--leader-election", f"{namespace}/{LEASE}"]


@pytest.fixture
def replicas(
    control_plane: ControlPlane, namespace: str, gitlab: FakeGitLab, runners: Runners, tmp_path: Path
) -> Iterator[tuple[Replica, Replica]]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    active = Replica(control_plane, namespace, tmp_path / "a", "replica-a").start()
    standby = Replica(control_plane, namespace, tmp_path / "b", "replica-b").start(until=b"standing by")
    try:
        yield active, standby
    finally:
        for replica in (active, standby):
            replica.stop()
            assert_no_secrets(replica.output(), runners, gitlab)


def holder(kube: client.ApiClient, namespace: str) -> str | None:
    identity: str | None = client.CoordinationV1Api(kube).read_namespaced_lease(LEASE, namespace).spec.holder_identity
    return identity


def kill_and_time_takeover(active: Replica, standby: Replica, kube: client.ApiClient, namespace: str) -> float:
    """SIGKILL the active replica; seconds until the standby holds the Lease and its watch streams are open."""
    assert holder(kube, namespace) == active.identity and standby.alive()
    active.kill()
    killed = time.monotonic()
    wait_for(
        lambda: b"Starting the watch-stream" in standby.logs[-1].read_bytes(),
        timeout=TAKEOVER_LIMIT + 15,
        interval=0.1,
        message="the standby to take over",
    )
    took = time.monotonic() - killed
    assert holder(kube, namespace) == standby.identity
    print(f"\nfailover: the standby took over {took:.1f} s after the SIGKILL of the active replica")
    return took


def calls(gitlab: FakeGitLab, method: str, suffix: str) -> list[int]:
    return [c.status for c in gitlab.calls if c.method == method and c.path.endswith(suffix)]


def no_call_refused(gitlab: FakeGitLab) -> None:
    """No call with a revoked (or any refused) token: GitLab answers those 401/403."""
    refused = [(c.method, c.path, c.status) for c in gitlab.calls if c.status in (401, 403)]
    assert not refused, refused


def test_the_standby_waits_while_the_leader_acts(
    replicas: tuple[Replica, Replica], runners: Runners, gitlab: FakeGitLab, kube: client.ApiClient, namespace: str
) -> None:
    active, standby = replicas
    runners.create(runners.manifest())
    runners.wait_ready()
    assert holder(kube, namespace) == active.identity
    assert b"Starting the watch-stream" not in standby.logs[-1].read_bytes()  # it has not touched a Runner
    assert len(gitlab.runners) == 1 and calls(gitlab, "POST", "/user/runners") == [201]


def test_sigkill_of_a_steady_leader(
    replicas: tuple[Replica, Replica], runners: Runners, gitlab: FakeGitLab, kube: client.ApiClient, namespace: str
) -> None:
    active, standby = replicas
    runners.create(runners.manifest(replicas=2))
    runner_id = runners.wait_ready()["status"]["runnerId"]
    token = runners.secret_data("builds-runner-token")["token"]
    reads_before = reads_of(gitlab, runner_id)

    assert kill_and_time_takeover(active, standby, kube, namespace) <= TAKEOVER_LIMIT
    # The new leader resumes the Runner (it reads it in GitLab) and adopts everything as it is.
    wait_for(lambda: reads_of(gitlab, runner_id) > reads_before, timeout=30, message="resumed")
    runners.wait_ready()
    assert gitlab.runner_ids() == [runner_id] and calls(gitlab, "POST", "/user/runners") == [201]
    assert not calls(gitlab, "POST", "/reset_authentication_token")
    assert_same_token(runners.secret_data("builds-runner-token")["token"], token, "kept across the failover")
    no_call_refused(gitlab)


def test_sigkill_after_gitlab_committed_the_create(
    replicas: tuple[Replica, Replica], runners: Runners, gitlab: FakeGitLab, kube: client.ApiClient, namespace: str
) -> None:
    """GitLab creates the runner and holds its answer: the active replica dies before it can write anything. The
    new leader finds the orphan by its ownership marker and adopts it rather than creating a second runner."""
    active, standby = replicas
    gitlab.faults.add(Fault(method="POST", path=r"/user/runners$", kind="hold_after_commit", seconds=60, count=1))
    runners.create(runners.manifest())
    first_id = wait_for(gitlab.runner_ids, timeout=30, message="the runner created in GitLab")[0]

    assert kill_and_time_takeover(active, standby, kube, namespace) <= TAKEOVER_LIMIT
    gitlab.faults.clear()
    runner_id = runners.wait_ready(timeout=60)["status"]["runnerId"]
    assert runner_id == first_id and gitlab.runner_ids() == [first_id]  # adopted, not created again
    assert_same_token(runners.secret_data("builds-runner-token")["token"], gitlab.runners[runner_id].token, "stored")
    # The orphan's token was only ever in the answer nobody received: adopting it resets it once to get one. Still
    # one token: the reset revokes the unseen one.
    assert calls(gitlab, "POST", "/reset_authentication_token") == [201]
    no_call_refused(gitlab)


def test_sigkill_before_the_create_reached_gitlab(
    replicas: tuple[Replica, Replica], runners: Runners, gitlab: FakeGitLab, kube: client.ApiClient, namespace: str
) -> None:
    """GitLab refuses every create (503, nothing processed) while the active replica retries: it dies with the
    create still to be done. The new leader creates exactly one runner."""
    active, standby = replicas
    gitlab.faults.add(Fault(method="POST", path=r"/user/runners$", kind="status", status=503))
    runners.create(runners.manifest())
    wait_for(lambda: calls(gitlab, "POST", "/user/runners"), timeout=30, message="a create attempt")

    assert kill_and_time_takeover(active, standby, kube, namespace) <= TAKEOVER_LIMIT
    assert not gitlab.runners
    gitlab.faults.clear()
    runner_id = runners.wait_ready(timeout=60)["status"]["runnerId"]
    assert gitlab.runner_ids() == [runner_id] and calls(gitlab, "POST", "/user/runners").count(201) == 1
    assert_same_token(runners.secret_data("builds-runner-token")["token"], gitlab.runners[runner_id].token, "stored")
    no_call_refused(gitlab)
