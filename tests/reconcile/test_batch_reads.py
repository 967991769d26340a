"""Drift checks served by batch reads (GitLab's GraphQL API, one paged query per connection and owner) or, when
GraphQL cannot serve them, runner by runner over REST: drift is corrected, a deleted runner re-created and a manager
going offline reported on both paths; many Runners on one connection cost one batch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from glrt_operator.runners import builders
from glrt_operator.runners.batch import GRAPHQL, REST, RunnerDirectory
from glrt_operator.runners.context import RunnerRef, RunnerSettings
from glrt_operator.runners.reconcile import ReconcileOutcome, open_context, reconcile
from tests.fake_gitlab import graphql_api

from .conftest import LOG, NAMESPACE, UID, Env, InMemoryKube
from .test_reconcile import register_manager


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=[GRAPHQL, REST])
def path(request: pytest.FixtureRequest, env: Env) -> Iterator[str]:
    """GraphQL served, or not (404, as on a GitLab without it): the reads fall back to REST."""
    if request.param == REST:
        graphql_api.configure(env.gitlab, enabled=False)
    yield str(request.param)


def run(env: Env, directory: RunnerDirectory) -> ReconcileOutcome:
    settings = RunnerSettings(directory=directory)
    return reconcile(open_context(env.kube, env.pool, env.ref, env.spec, env.emit, LOG, settings=settings))


def graphql_calls(env: Env, since: int = 0) -> int:
    return len([c for c in env.gitlab.calls[since:] if c.path.endswith("/graphql")])


def runner_reads(env: Env, since: int = 0) -> int:
    """REST reads of single runners and their managers."""
    calls = env.gitlab.calls[since:]
    return len([c for c in calls if c.method == "GET" and "/runners/" in c.path and not c.path.endswith("/all")])


def test_drift_in_gitlab_is_corrected(env: Env, path: str, clock: Clock) -> None:
    directory = RunnerDirectory(ttl=60, clock=clock)
    runner_id = run(env, directory).runner_id
    clock.now += 61  # the next batch
    env.gitlab.update_runner(runner_id, description="edited in the UI", paused=True)
    outcome = run(env, directory)
    runner = env.gitlab.runner(runner_id)
    assert runner is not None and runner.description == "builds" and not runner.paused
    assert env.reasons()[-1] == "RunnerUpdated" and "description, paused" in env.events[-1][2]
    assert outcome.gitlab_reads == path and outcome.status_patch()["gitlabReads"] == path


def test_a_runner_deleted_in_gitlab_is_created_anew(env: Env, path: str, clock: Clock) -> None:
    directory = RunnerDirectory(ttl=60, clock=clock)
    old = run(env, directory).runner_id
    run(env, directory)  # a batch that lists it
    env.gitlab.delete_runner(old)
    clock.now += 61
    new = run(env, directory).runner_id
    assert new != old and env.kube.status["runnerId"] == new and env.posts() == 2
    assert env.reasons() == ["RunnerCreated", "RunnerMissing", "RunnerCreated"]


def test_a_manager_going_offline_shows(env: Env, path: str, clock: Clock) -> None:
    directory = RunnerDirectory(ttl=60, clock=clock)
    run(env, directory)
    register_manager(env, builders.system_id(UID, 0))
    env.kube.pods = {"builds-0"}
    clock.now += 61
    assert [r["managerStatus"] for r in run(env, directory).replicas] == ["online"]
    env.gitlab.clock.advance(3 * 3600)  # GitLab's online window is 2 h
    try:
        clock.now += 61
        assert [r["managerStatus"] for r in run(env, directory).replicas] == ["offline"]
    finally:
        env.gitlab.clock.advance(-3 * 3600)


def test_a_runner_created_after_the_batch_is_not_taken_for_deleted(env: Env, clock: Clock) -> None:
    directory = RunnerDirectory(ttl=60, clock=clock)
    other = Env(
        env.gitlab, InMemoryKube(), env.pool, dict(env.spec), ref=RunnerRef(NAMESPACE, "other", UID[:-4] + "0001")
    )
    other.use_token("glpat-api")
    run(other, directory)
    run(other, directory)  # the batch is read now, before `builds` exists
    run(env, directory)  # created
    calls = len(env.gitlab.calls)
    outcome = run(env, directory)  # not in the batch: looked up over REST, found
    assert env.posts() == 2 and outcome.gitlab_reads == GRAPHQL
    assert runner_reads(env, calls) == 2 and graphql_calls(env, calls) == 0


def test_many_runners_on_one_connection_cost_one_batch(env: Env, clock: Clock) -> None:
    directory = RunnerDirectory(ttl=60, clock=clock)
    envs = [env]
    for n in range(1, 5):
        e = Env(
            env.gitlab,
            InMemoryKube(),
            env.pool,
            dict(env.spec),
            ref=RunnerRef(NAMESPACE, f"r{n}", f"{UID[:-4]}{n:04d}"),
        )
        e.use_token("glpat-api")
        envs.append(e)
    for e in envs:
        run(e, directory)
    clock.now += 61
    calls = len(env.gitlab.calls)
    outcomes = [run(e, directory) for e in envs]
    # One GraphQL page for the five and the project's path (read once, then kept); nothing per runner but the token
    # check of a Runner whose managers have not contacted GitLab lately (none here: no pods).
    assert graphql_calls(env, calls) == 1 and runner_reads(env, calls) == 0
    probes = [c for c in env.gitlab.calls[calls:] if c.path.endswith("/runners/managers")]
    assert len(env.gitlab.calls) - calls - len(probes) == 2
    assert {o.gitlab_reads for o in outcomes} == {GRAPHQL}


def test_a_token_without_read_api_reads_over_rest(env: Env, clock: Clock) -> None:
    env.use_token("glpat-both")  # create_runner + manage_runner: GraphQL answers 401
    directory = RunnerDirectory(ttl=60, clock=clock)
    run(env, directory)
    calls = len(env.gitlab.calls)
    outcome = run(env, directory)
    assert outcome.gitlab_reads == REST and runner_reads(env, calls) == 2
    # Not asked again at every resync: REST until `retry_after` has passed.
    assert graphql_calls(env, calls) == 0


def test_a_spec_edit_costs_one_put_of_the_changed_fields(env: Env, clock: Clock) -> None:
    directory = RunnerDirectory(ttl=60, clock=clock)
    runner_id = run(env, directory).runner_id
    register_manager(env, builders.system_id(UID, 0))  # a replica polls GitLab: its token is known good
    env.kube.pods = {"builds-0"}
    run(env, directory)  # a resync: the batch is read
    env.spec["description"] = "builds, edited"
    env.spec["tags"] = ["docker", "linux"]
    calls = len(env.gitlab.calls)
    run(env, directory)
    edit = env.gitlab.calls[calls:]
    assert [(c.method, c.path) for c in edit] == [("PUT", f"/api/v4/runners/{runner_id}")]
    assert sorted(edit[0].body_keys) == ["description", "tag_list"]
    runner = env.gitlab.runner(runner_id)
    assert runner is not None and runner.description == "builds, edited"
    # The batch's copy follows GitLab's answer to the PUT: the next resync (or a retry) neither reads nor writes.
    calls = len(env.gitlab.calls)
    run(env, directory)
    assert env.gitlab.calls[calls:] == []


def test_a_removed_manager_leaves_the_batch_too(env: Env, clock: Clock) -> None:
    directory = RunnerDirectory(ttl=60, clock=clock)
    env.spec["replicas"] = 2
    run(env, directory)
    for ordinal in range(2):
        register_manager(env, builders.system_id(UID, ordinal))
    clock.now += 61
    run(env, directory)  # the batch lists both managers
    env.spec["replicas"] = 1
    outcome = run(env, directory)  # replica 1's pod is gone: its manager is removed
    assert [r["ordinal"] for r in outcome.replicas] == [0] and env.reasons()[-1] == "ManagerRemoved"
    calls = len(env.gitlab.calls)
    run(env, directory)  # the same batch: not removed a second time, nothing read
    assert env.gitlab.calls[calls:] == []
