"""Drift detection end to end, on the batch path (GitLab's GraphQL API) and on REST (the fallback from a GitLab
that does not serve GraphQL, and batch reads turned off): a runner edited in GitLab is corrected, one deleted in
GitLab is re-created with its new token in the Secrets, a manager going offline shows in the status, each within one
effective resync interval (plus the batch's time to live: a batch read may be that old). The fake GitLab's call log
shows which path served it, and `status.gitlabReads` says so too."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from glrt_operator.runners.batch import GRAPHQL, REST
from tests.e2e.conftest import PAT, PROJECT_ID, Runners, assert_no_secrets, assert_same_token
from tests.fake_gitlab import FakeGitLab, graphql_api
from tests.fake_gitlab.state import ONLINE_CONTACT_TIMEOUT
from tests.harness.controlplane import ControlPlane
from tests.harness.operator import OperatorProcess
from tests.harness.runner_pod import EmulatedRunnerPod
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster

RESYNC, BATCH_TTL = 4.0, 2.0
# One effective interval (the budget does not stretch it at one Runner) plus the batch's age, and slack for a
# reconcile on a loaded 2-core machine.
WITHIN = RESYNC + BATCH_TTL + 4.0


# How the operator comes to read over a path: GraphQL served (batch reads); GraphQL answered 404, as by a GitLab
# without it (the fallback); a token without `read_api`, refused the project path a batch read starts from, while
# REST still serves its `manage_runner` reads (the fallback); batch reads turned off (GLRT_BATCH_READS=false).
MODES = {
    "graphql": (GRAPHQL, "true"),
    "fallback": (REST, "true"),
    "no-read_api": (REST, "true"),
    "batch-reads-off": (REST, "false"),
}


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest, gitlab: FakeGitLab) -> str:
    if request.param == "fallback":
        graphql_api.configure(gitlab, enabled=False)
    if request.param == "no-read_api":
        gitlab.set_access_token_scopes(PAT, ["create_runner", "manage_runner"])
    return str(request.param)


@pytest.fixture
def path(mode: str) -> str:
    """The path the reads must take: `batch.GRAPHQL` or `batch.REST`."""
    return MODES[mode][0]


@pytest.fixture
def operator(
    control_plane: ControlPlane, namespace: str, gitlab: FakeGitLab, runners: Runners, tmp_path: Path, mode: str
) -> Iterator[OperatorProcess]:
    env = {
        "GLRT_RESYNC_INTERVAL": str(RESYNC),
        "GLRT_BATCH_READ_TTL": str(BATCH_TTL),
        "GLRT_BATCH_READS": MODES[mode][1],
    }
    process = OperatorProcess(control_plane.kubeconfig, namespace, tmp_path, env=env).start()
    try:
        yield process
    finally:
        process.stop()
        assert_no_secrets(process.output(), runners, gitlab)
    if mode == "no-read_api":  # the fallback came from GitLab refusing the token's reads, not from GraphQL missing
        # GraphQL names the project by its path; reading that path (GET /projects/:id) already needs read_api.
        refused = {(c.path, c.status) for c in gitlab.calls if c.path.endswith(f"/projects/{PROJECT_ID}")}
        assert refused and {status for _, status in refused} == {403}, refused
        assert graphql_answers(gitlab, 0) == 0


def rest_reads(gitlab: FakeGitLab, since: int, runner_id: int, suffix: str = "") -> int:
    return len(
        [c for c in gitlab.calls[since:] if c.method == "GET" and c.path.endswith(f"/runners/{runner_id}{suffix}")]
    )


def graphql_answers(gitlab: FakeGitLab, since: int) -> int:
    """GraphQL queries GitLab answered (a refused one, 404 or 401, served nothing)."""
    return len([c for c in gitlab.calls[since:] if c.path.endswith("/api/graphql") and c.status == 200])


def assert_served_by(path: str, gitlab: FakeGitLab, since: int, runner_id: int, suffix: str = "") -> None:
    graphql, rest = graphql_answers(gitlab, since), rest_reads(gitlab, since, runner_id, suffix)
    print(f"\n{path}: {graphql} GraphQL answers, {rest} REST reads of /runners/{runner_id}{suffix}")
    if path == GRAPHQL:
        assert graphql >= 1 and rest == 0
    else:
        assert graphql == 0 and rest >= 1


def timed(condition: Any, message: str) -> float:
    start = time.monotonic()
    wait_for(condition, timeout=WITHIN, interval=0.2, message=f"{message} within {WITHIN:.0f} s")
    elapsed = time.monotonic() - start
    print(f"\n{message}: {elapsed:.1f} s")
    return elapsed


def effective_interval(operator: OperatorProcess) -> float:
    """`glrt_resync_effective_interval_seconds`, the interval the operator resyncs at (pacing may stretch it)."""
    for line in operator.scrape().splitlines():
        if line.startswith("glrt_resync_effective_interval_seconds "):
            return float(line.split()[1])
    raise AssertionError("no glrt_resync_effective_interval_seconds in the metrics")


def ready(runners: Runners, path: str, operator: OperatorProcess) -> dict[str, Any]:
    """Ready, and read at least once over the path under test."""
    runners.create(runners.manifest(replicas=1))
    runners.wait_ready()
    status = wait_for(
        lambda: (s := runners.get()["status"]).get("gitlabReads") == path and s,
        timeout=WITHIN,
        message=f"status.gitlabReads {path}",
    )
    # WITHIN is one effective interval (plus the batch's age and slack) only while pacing leaves it unstretched;
    # the gauge is set by the pacing once a resync has run (0 before).
    interval = wait_for(lambda: effective_interval(operator), timeout=WITHIN, message="the effective interval")
    assert interval == RESYNC
    return status


def test_a_runner_edited_in_gitlab_is_corrected(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess, path: str
) -> None:
    runner_id = ready(runners, path, operator)["runnerId"]
    since = len(gitlab.calls)
    gitlab.update_runner(runner_id, description="changed in the UI", locked=False, tag_list=["windows"])

    def corrected() -> bool:
        r = gitlab.runners[runner_id]
        return r.description == "builds for team A" and r.locked is True and sorted(r.tag_list) == ["docker", "linux"]

    timed(corrected, f"edit corrected ({path})")
    assert_served_by(path, gitlab, since, runner_id)
    puts = [c for c in gitlab.calls[since:] if c.method == "PUT" and c.path.endswith(f"/runners/{runner_id}")]
    assert len(puts) == 1 and set(puts[0].body_keys) == {"description", "locked", "tag_list"}
    assert runners.get()["status"]["gitlabReads"] == path


def test_a_runner_deleted_in_gitlab_is_recreated(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess, path: str
) -> None:
    old_id = ready(runners, path, operator)["runnerId"]
    since = len(gitlab.calls)
    gitlab.delete_runner(old_id)

    timed(lambda: runners.get()["status"].get("runnerId") not in (None, old_id), f"deletion repaired ({path})")
    new_id = runners.get()["status"]["runnerId"]
    assert set(gitlab.runners) == {new_id}
    # The batch no longer lists it, and a runner missing from a batch is confirmed over REST before it is
    # re-created: on the GraphQL path that lookup is the one REST read.
    graphql, rest = graphql_answers(gitlab, since), rest_reads(gitlab, since, old_id)
    print(f"\n{path}: {graphql} GraphQL answers, {rest} REST reads of the deleted runner")
    assert rest >= 1 and (graphql >= 1 if path == GRAPHQL else graphql == 0)

    def token_delivered() -> bool:
        config = tomllib.loads(runners.secret_data("builds-runner-config")["config.toml"])
        return config["runners"][0]["id"] == new_id

    wait_for(token_delivered, timeout=WITHIN, message="config.toml names the new runner")
    token = runners.secret_data("builds-runner-token")["token"]
    assert_same_token(token, gitlab.runners[new_id].token, "token Secret vs GitLab")
    config = tomllib.loads(runners.secret_data("builds-runner-config")["config.toml"])
    assert_same_token(config["runners"][0]["token"], token, "config.toml vs token Secret")
    wait_for(lambda: "RunnerMissing" in runners.event_reasons(), timeout=10, message="RunnerMissing Event")


def test_a_manager_going_offline_shows_in_the_status(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess, path: str, kube: client.ApiClient
) -> None:
    runner_id = ready(runners, path, operator)["runnerId"]
    pod = EmulatedRunnerPod(kube, runners.namespace, "builds-runner-config", 0).start()
    try:
        wait_for(lambda: gitlab.runners[runner_id].managers, timeout=10, message="the manager registered")

        def manager_status() -> str | None:
            replicas = runners.get()["status"].get("replicas") or [{}]
            return replicas[0].get("managerStatus")

        wait_for(lambda: manager_status() == "online", timeout=WITHIN, message="manager online")
    finally:
        pod.stop()
    # The manager stops polling, and its last contact ages past GitLab's online window.
    with gitlab._lock:  # the live record (`gitlab.runners` hands out copies)
        for manager in gitlab._state.runners[runner_id].managers.values():
            assert manager.contacted_at is not None
            manager.contacted_at -= ONLINE_CONTACT_TIMEOUT + timedelta(minutes=1)
    since = len(gitlab.calls)

    timed(lambda: manager_status() == "offline", f"manager offline shown ({path})")
    assert_served_by(path, gitlab, since, runner_id, "/managers")
    assert runners.get()["status"]["gitlabReads"] == path
