"""The GitLab request budgets across Runners, through the handlers: GitLab's Retry-After on one Runner's call holds
back every other Runner's calls to that host, on any connection, deletions included; a resync held back is skipped
quietly."""

from __future__ import annotations

import asyncio
import threading
import time

import kopf
import pytest

from glrt_operator.adapters.gitlab.budget import ConnectionBudget
from glrt_operator.runners import handlers
from glrt_operator.runners.context import RunnerRef
from tests.fake_gitlab.faults import Fault

from .conftest import LOG, NAMESPACE, Env, InMemoryKube
from .test_handlers import call


@pytest.fixture
def posted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Events the handlers post (Kopf's poster needs a running operator)."""
    events: list[tuple[str, str]] = []
    monkeypatch.setattr(kopf, "event", lambda body, *, type, reason, message: events.append((type, reason)))
    return events


def other_runner(env: Env, token: str = "glpat-api") -> Env:
    """A second Runner in another namespace's worth of objects, on the same GitLab and the same pool (another
    connection with another `token`)."""
    other = Env(
        gitlab=env.gitlab,
        kube=InMemoryKube(),
        pool=env.pool,
        spec=dict(env.spec, description="web"),
        ref=RunnerRef(NAMESPACE, "web", "5d1c6c8e-0000-4000-8000-0000000000ff"),
    )
    other.use_token(token)
    return other


def budget_of(env: Env, token: str = "glpat-api") -> ConnectionBudget:
    """The budget of the Runner's connection (its URL and access token)."""
    return env.pool.budget(env.gitlab.api_url, token)


def test_a_429_on_one_runner_delays_another_runners_deletion(env: Env, posted: list[tuple[str, str]]) -> None:
    builds = env
    web = other_runner(env, "glpat-admin")  # another connection (another user's token) to the same host
    builds_id = call(handlers.on_runner_created_or_changed, builds)["status"]["runnerId"]
    web_id = call(handlers.on_runner_created_or_changed, web)["status"]["runnerId"]
    env.gitlab.faults.add(
        # builds' read: of the runner, or of the batch (GraphQL) that lists it
        Fault(path=rf"^/api/v4/runners/{builds_id}$|^/api/graphql$", kind="rate_limit_rack", retry_after=30, count=1)
    )

    # builds' resync meets GitLab's 429 (a real answer from GitLab, not the operator's budget): transient, so the
    # resync is retried after GitLab's Retry-After and not reported yet.
    with pytest.raises(kopf.TemporaryError) as retried:
        call(handlers.resync_runner, builds)
    assert retried.value.delay == 30.0
    assert "conditions" not in builds.kube.status or all(
        c["type"] != "Ready" or c["status"] == "True" for c in builds.kube.status["conditions"]
    )
    calls = len(env.gitlab.calls)

    # web's deletion is held back for GitLab's Retry-After, without a request, and Kopf retries it then.
    with pytest.raises(kopf.TemporaryError) as held:
        call(handlers.on_runner_deleted, web)
    assert held.value.delay is not None and 28.0 < held.value.delay <= 30.0
    assert len(env.gitlab.calls) == calls and env.gitlab.runner(web_id) is not None
    ready = next(c for c in web.kube.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "GitLabThrottled" and "429" in ready["message"]

    # web's resync in the same pause: skipped quietly (no request, no condition, no Event).
    events = len(posted)
    conditions = list(web.kube.status["conditions"])
    assert call(handlers.resync_runner, web) == {}
    assert len(env.gitlab.calls) == calls and len(posted) == events and web.kube.status["conditions"] == conditions

    # Once the pause is over (here: the budget forgets it), the deletion goes through.
    env.pool.pause(env.gitlab.url).clear()
    call(handlers.on_runner_deleted, web)
    assert env.gitlab.runner(web_id) is None and posted[-1] == ("Normal", "RunnerDeleted")


def test_a_spent_budget_holds_back_creation_with_the_budgets_delay(env: Env, posted: list[tuple[str, str]]) -> None:
    budget = budget_of(env)
    budget.max_wait = 0.0
    budget._answered.extend([budget._clock()] * budget.per_minute)  # as if 600 calls had just been made
    with pytest.raises(kopf.TemporaryError) as held:
        call(handlers.on_runner_created_or_changed, env)
    # Exactly the budget's delay (the window frees in 60 s), not the error back-off.
    assert held.value.delay is not None and 59.0 < held.value.delay <= 60.0
    assert env.posts() == 0 and posted == [("Warning", "GitLabThrottled")]


def test_a_resync_that_waited_past_a_spec_edit_does_nothing(env: Env, posted: list[tuple[str, str]]) -> None:
    """Resyncs queue for the resync pool; one whose Runner was edited and reconciled meanwhile carries a stale
    spec and must not apply it."""
    call(handlers.on_runner_created_or_changed, env, generation=1)
    stale = kopf.Body(
        {
            "metadata": {"name": env.ref.name, "namespace": NAMESPACE, "uid": env.ref.uid, "generation": 1},
            "spec": dict(env.spec, description="the old description"),
            "status": dict(env.kube.status),
        }
    )
    call(handlers.on_runner_created_or_changed, env, generation=2)  # the edit, reconciled first
    calls = len(env.gitlab.calls)
    patch = kopf.Patch()
    memo = env.__dict__["memo"]
    work = handlers.resync_runner(
        body=stale, spec=stale["spec"], status=stale["status"], patch=patch, memo=memo, logger=LOG
    )
    asyncio.run(work)
    assert patch == {} and len(env.gitlab.calls) == calls
    assert env.gitlab.runner(env.kube.status["runnerId"]).description == "builds"  # type: ignore[union-attr]


def test_a_resume_is_a_resync_held_back_quietly_while_a_creation_is_not(
    env: Env, posted: list[tuple[str, str]]
) -> None:
    """At operator start every Runner is resumed: as resyncs, they yield to a new Runner and never fail it."""
    call(handlers.on_runner_created_or_changed, env)
    env.kube.status.pop("observedGeneration")  # e.g. its last change failed for good: the resume still tries
    patch = call(handlers.on_runner_resumed, env)
    assert patch["status"]["observedGeneration"] == 1  # reconciled, on the resync pool

    budget = budget_of(env)
    budget._events_waiting += 1  # an event is waiting for this host: resyncs (and resumes) yield to it
    calls, events = len(env.gitlab.calls), len(posted)
    assert call(handlers.on_runner_resumed, env) == {}
    assert len(env.gitlab.calls) == calls and len(posted) == events
    budget._events_waiting -= 1
    web = other_runner(env)
    call(handlers.on_runner_created_or_changed, web)  # events go
    assert len(env.gitlab.calls) == calls + 1


class Stopped:
    """Kopf's `stopped` flag of a timer, set after `after` seconds (Kopf sets it when the Runner is deleted)."""

    def __init__(self, after: float):
        self.after = after

    async def wait(self) -> None:
        await asyncio.sleep(self.after)


def test_a_resync_still_queued_when_its_runner_is_deleted_never_runs(env: Env, posted: list[tuple[str, str]]) -> None:
    """Kopf holds the finalizer until the timer exits: it must not wait for the resync's turn in the pool."""
    call(handlers.on_runner_created_or_changed, env)
    memo = env.__dict__["memo"]
    release = threading.Event()
    memo["resync_pool"].submit(release.wait, 10)  # the only resync worker is busy with another Runner
    body = kopf.Body(
        {
            "metadata": {"name": env.ref.name, "namespace": NAMESPACE, "uid": env.ref.uid, "generation": 1},
            "spec": env.spec,
            "status": dict(env.kube.status),
        }
    )
    calls, patch = len(env.gitlab.calls), kopf.Patch()
    started = time.monotonic()
    timer = handlers.resync_runner(
        body=body, spec=body["spec"], status=body["status"], patch=patch, memo=memo, logger=LOG, stopped=Stopped(0.2)
    )
    asyncio.run(timer)
    assert time.monotonic() - started < 2.0  # exits when stopped, not when the worker frees
    release.set()
    memo["resync_pool"].submit(lambda: None).result(5)  # the queue has drained
    assert patch == {} and len(env.gitlab.calls) == calls  # the abandoned resync never ran
