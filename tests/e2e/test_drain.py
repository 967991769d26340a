"""Every stop of a manager pod drains its running job, on a real node with the runner stand-in.

One test, in phases, to keep the suite lean: a pod deletion and a scale-down (2 -> 1) at the same time, each with
a job running; a config rollout while one replica runs a job (the idle replica rolls without waiting for it); and
a job longer than the drain timeout, which ends on the forceful path. The jobs are short here
(GLRT_DRAIN_JOB_SECONDS, 20 s by default; the drain timeout is three times that)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.conftest import Runners
from tests.e2e.test_pods import gitlab, polling_managers, ready_replicas, stand_in  # noqa: F401 -- fixture
from tests.fake_gitlab import FakeGitLab
from tests.fake_gitlab.jobs import results, sleep_job
from tests.harness.node import Node
from tests.harness.operator import OperatorProcess
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster

JOB_SECONDS = int(os.environ.get("GLRT_DRAIN_JOB_SECONDS", "20"))
DRAIN_TIMEOUT = 3 * JOB_SECONDS
SHUTDOWN_TIMEOUT = 10
TAGS = ["docker"]


def wait_node(node: Node, ns: str, predicate: Callable[[], Any], message: str, timeout: float = 120) -> Any:
    try:
        return wait_for(predicate, timeout=timeout, message=message, interval=0.5)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{node.describe(ns)}") from None


def assigned(gl: FakeGitLab, job_ids: list[int]) -> dict[int, str] | None:
    """``{job_id: system_id}`` once every job is handed out."""
    seen = {j: sid for j, _, sid in gl.assigned_jobs if j in job_ids and sid}
    return seen if len(seen) == len(job_ids) else None


def pod(runners: Runners, name: str) -> client.V1Pod | None:
    try:
        return runners.core.read_namespaced_pod(name, runners.namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def replaced_and_ready(runners: Runners, name: str, old_uid: str) -> bool:
    p = pod(runners, name)
    if p is None or p.metadata.uid == old_uid or p.metadata.deletion_timestamp is not None:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])


def draining(runners: Runners) -> set[int]:
    return {r["ordinal"] for r in runners.get()["status"].get("replicas", []) if r.get("draining")}


@pytest.mark.timeout(300 + 6 * JOB_SECONDS)
def test_deletion_scale_down_and_rollout_drain_the_running_job_and_a_longer_job_is_aborted(
    runners: Runners,
    gitlab: FakeGitLab,  # noqa: F811 -- the fixture on the node's gateway
    operator: OperatorProcess,
    node: Node,
) -> None:
    ns = runners.namespace
    spec = stand_in(2)
    spec["manager"] = {**spec["manager"], "drainTimeout": DRAIN_TIMEOUT}  # type: ignore[dict-item]
    # One job per replica at a time, so two queued jobs land on two replicas.
    # The shell executor: jobs run inside the manager pod, the subject here (the kubernetes executor's job pods are
    # tests/e2e/test_kubernetes_executor.py's).
    spec["config"] = {"checkInterval": 1, "concurrent": 1, "shutdownTimeout": SHUTDOWN_TIMEOUT, "executor": "shell"}
    runners.create(runners.manifest(**spec))
    status = runners.wait_ready()["status"]
    runner_id = int(status["runnerId"])
    sid = {r["ordinal"]: r["systemId"] for r in status["replicas"]}
    ordinal_of = {s: o for o, s in sid.items()}
    wait_node(node, ns, lambda: polling_managers(gitlab, runner_id) == set(sid.values()), "2 managers poll")
    sts = runners.apps.read_namespaced_stateful_set("builds", ns)
    assert sts.spec.update_strategy.rolling_update.max_unavailable == "100%"
    grace = sts.spec.template.spec.termination_grace_period_seconds
    assert grace == DRAIN_TIMEOUT + SHUTDOWN_TIMEOUT

    # --- 1. delete builds-0 and scale 2 -> 1 (builds-1 goes), each running a job ---------------------------------
    jobs = [gitlab.enqueue_job(tags=TAGS, payload=sleep_job(JOB_SECONDS)) for _ in range(2)]
    on = wait_node(node, ns, lambda: assigned(gitlab, jobs), "both jobs handed out", timeout=30)
    assert {ordinal_of[s] for s in on.values()} == {0, 1}, "one job per replica"
    uid0 = runners.core.read_namespaced_pod("builds-0", ns).metadata.uid
    runners.core.delete_namespaced_pod("builds-0", ns)  # the pod's own grace period, as `kubectl delete pod`
    runners.patch_spec(replicas=1)
    assert wait_node(node, ns, lambda: draining(runners) == {0, 1}, "both replicas shown draining", timeout=30)
    pod1_seen = datetime.now(UTC)
    while pod(runners, "builds-1") is not None:
        # Its manager stays in GitLab while the pod drains.
        assert sid[1] in gitlab.runners[runner_id].managers
        pod1_seen = datetime.now(UTC)
        time.sleep(0.5)
        assert (datetime.now(UTC) - pod1_seen).total_seconds() < 2 * DRAIN_TIMEOUT
    # builds-0 drains at the same time and its job may have been handed out a little later: it may still be ending.
    wait_node(node, ns, lambda: set(jobs) <= set(results(gitlab)), "both jobs reported", timeout=DRAIN_TIMEOUT)
    finished = results(gitlab)
    assert {j: finished[j]["state"] for j in jobs} == {j: "success" for j in jobs}
    wait_node(node, ns, lambda: sid[1] not in gitlab.runners[runner_id].managers, "replica 1's manager removed")
    removal = next(
        c
        for c in gitlab.calls
        if c.method == "DELETE" and c.path.endswith("/runners/managers") and c.params.get("system_id") == sid[1]
    )
    assert removal.time > pod1_seen, "the manager was removed only after its pod was gone"
    wait_node(node, ns, lambda: replaced_and_ready(runners, "builds-0", uid0), "builds-0 back")

    # --- 2. a config change rolls both pods: the idle one does not wait for the busy one --------------------------
    runners.patch_spec(replicas=2)
    wait_node(node, ns, lambda: ready_replicas(runners) == 2, "2 pods Ready again")
    wait_node(node, ns, lambda: polling_managers(gitlab, runner_id) == set(sid.values()), "2 managers poll")
    (job,) = jobs = [gitlab.enqueue_job(tags=TAGS, payload=sleep_job(JOB_SECONDS))]
    busy = ordinal_of[wait_node(node, ns, lambda: assigned(gitlab, jobs), "the job handed out", timeout=30)[job]]
    idle = 1 - busy
    uids = {o: runners.core.read_namespaced_pod(f"builds-{o}", ns).metadata.uid for o in (0, 1)}
    runners.patch_spec(config={**spec["config"], "logLevel": "debug"})  # type: ignore[dict-item]
    wait_node(node, ns, lambda: replaced_and_ready(runners, f"builds-{idle}", uids[idle]), "the idle pod rolled")
    busy_pod = pod(runners, f"builds-{busy}")
    assert busy_pod is not None and busy_pod.metadata.uid == uids[busy], "the busy pod still drains"
    assert busy_pod.metadata.deletion_timestamp is not None and job not in results(gitlab)
    wait_node(node, ns, lambda: job in results(gitlab), "the job finished", timeout=2 * JOB_SECONDS + 30)
    assert results(gitlab)[job]["state"] == "success"
    wait_node(node, ns, lambda: replaced_and_ready(runners, f"builds-{busy}", uids[busy]), "the busy pod rolled")

    # --- 3. a job longer than the drain timeout: SIGTERM after it, the job is aborted and reported failed --------
    short_drain = 3
    runners.patch_spec(manager={**spec["manager"], "drainTimeout": short_drain})  # type: ignore[dict-item]
    wait_node(
        node,
        ns,
        lambda: (
            all(
                (p := pod(runners, f"builds-{o}")) is not None
                and p.spec.termination_grace_period_seconds == short_drain + SHUTDOWN_TIMEOUT
                for o in (0, 1)
            )
            and ready_replicas(runners) == 2
        ),
        "pods with the short drain timeout",
    )
    (job,) = jobs = [gitlab.enqueue_job(tags=TAGS, payload=sleep_job(10 * JOB_SECONDS))]
    busy = ordinal_of[wait_node(node, ns, lambda: assigned(gitlab, jobs), "the long job handed out", timeout=60)[job]]
    started = time.monotonic()
    runners.core.delete_namespaced_pod(f"builds-{busy}", ns)
    wait_node(node, ns, lambda: job in results(gitlab), "the long job reported", timeout=short_drain + 60)
    elapsed = time.monotonic() - started
    assert results(gitlab)[job] == {"state": "failed", "failure_reason": "runner_system_failure"}
    assert short_drain <= elapsed < short_drain + SHUTDOWN_TIMEOUT + 5, elapsed
    # Nothing else ever failed, and no job is left without a final state.
    final = results(gitlab)
    assert [j for j, r in final.items() if r["state"] != "success"] == [job]
    assert {j for j, _, _ in gitlab.assigned_jobs} <= set(final)
    # Status writes carry only values: Kopf never found its patch applied differently (a `null` would be dropped).
    assert "inconsistencies" not in operator.output()
