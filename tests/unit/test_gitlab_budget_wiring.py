"""The request budget inside the GitLab adapter: one budget per host shared by every client of the pool, every
request (deletions included) counted, GitLab's pauses honoured across clients, resyncs behind events."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from glrt_operator.adapters.gitlab import GitLabError, GitLabPool, GitLabThrottled
from glrt_operator.core.reasons import Reason

URL = "https://gitlab.test/api/v4"
RUNNER_JSON = {"id": 5, "description": "r", "runner_type": "project_type"}


class Recorder:
    """A MockTransport handler: records every request that reached "GitLab" and answers from a script."""

    def __init__(self, *answers: httpx.Response):
        self.answers = list(answers)
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return self.answers.pop(0) if self.answers else httpx.Response(200, json=RUNNER_JSON)


def pool(recorder: Recorder, **settings: int | float) -> GitLabPool:
    return GitLabPool(transport=httpx.MockTransport(recorder), **settings)  # type: ignore[arg-type]


def test_one_budget_per_host_shared_by_every_token_and_ca() -> None:
    p = pool(Recorder())
    assert p.budget(URL) is p.budget("https://GITLAB.test/other/api/v4")
    assert p.budget(URL) is not p.budget("https://gitlab.test:8443/api/v4")
    assert p.budget(URL) is p.for_resyncs().budget(URL)  # the resync view shares the same budgets
    assert p.budget(URL).per_minute == 600 and p.budget(URL).max_in_flight == 8  # the defaults


def test_every_call_counts_against_the_host_budget_and_the_spent_budget_sends_nothing() -> None:
    recorder = Recorder()
    p = pool(recorder, per_minute=3, event_max_wait=0.0)
    alice, bob = p.client(URL, "glpat-alice"), p.client(URL, "glpat-bob")
    alice.get_runner(5)
    bob.delete_runner(5)
    alice.delete_manager("glrt-token", "s_000000000000")
    with pytest.raises(GitLabThrottled) as refused:
        bob.delete_runner_by_token("glrt-token")
    assert len(recorder.seen) == 3  # the fourth call never left the operator
    assert refused.value.reason == Reason.GITLAB_THROTTLED and refused.value.retryable
    assert 55.0 < (refused.value.retry_after or 0) <= 60.0  # the first call leaves the window after 60 s
    assert "3 requests per minute" in str(refused.value) and "glrt-token" not in str(refused.value)
    # Another host has its own budget.
    p.client("https://other.test/api/v4", "glpat-alice").get_runner(5)
    assert len(recorder.seen) == 4


def test_a_429_on_one_client_pauses_every_client_of_that_host() -> None:
    recorder = Recorder(httpx.Response(429, text="Retry later\n", headers={"Retry-After": "30"}))
    p = pool(recorder, event_max_wait=0.0)
    with pytest.raises(GitLabError) as rate_limited:
        p.client(URL, "glpat-alice").get_runner(5)
    assert rate_limited.value.status == 429 and rate_limited.value.reason == "GitLabRateLimited"
    with pytest.raises(GitLabThrottled) as paused:
        p.client(URL, "glpat-bob").delete_runner(6)
    assert 29.0 < (paused.value.retry_after or 0) <= 30.0 and "429" in str(paused.value)
    assert [r.method for r in recorder.seen] == ["GET"]  # the deletion waits for the pause to end
    p.client("https://other.test/api/v4", "glpat-bob").delete_runner(6)  # other hosts are not paused


def test_ratelimit_remaining_zero_pauses_before_any_429() -> None:
    reset = str(int(time.time()) + 20)
    recorder = Recorder(
        httpx.Response(200, json=RUNNER_JSON, headers={"RateLimit-Remaining": "0", "RateLimit-Reset": reset})
    )
    p = pool(recorder, event_max_wait=0.0)
    p.client(URL, "glpat").get_runner(5)
    with pytest.raises(GitLabThrottled):
        p.client(URL, "glpat").get_runner(5)
    assert len(recorder.seen) == 1


def test_resyncs_give_up_after_their_short_wait_while_events_wait_theirs() -> None:
    recorder = Recorder(httpx.Response(429, headers={"Retry-After": "1"}))
    p = pool(recorder, event_max_wait=5.0, resync_max_wait=0.0)
    with pytest.raises(GitLabError, match="429"):
        p.client(URL, "glpat").get_runner(5)
    started = time.monotonic()
    with pytest.raises(GitLabThrottled):
        p.for_resyncs().client(URL, "glpat").get_runner(5)
    assert time.monotonic() - started < 0.5  # refused at once: the resync worker goes back to its pool
    p.client(URL, "glpat").get_runner(5)  # an event waits the one-second pause out
    assert time.monotonic() - started >= 0.9 and len(recorder.seen) == 2


def test_an_event_takes_the_reserved_slot_while_resyncs_fill_theirs() -> None:
    gate = threading.Event()
    entered = threading.Semaphore(0)

    def slow(request: httpx.Request) -> httpx.Response:
        if request.headers["PRIVATE-TOKEN"] == "glpat-resync":
            entered.release()
            gate.wait(5)
        return httpx.Response(200, json=RUNNER_JSON)

    p = GitLabPool(transport=httpx.MockTransport(slow), max_in_flight=4, resync_max_wait=0.0)
    assert p.budget(URL).resync_in_flight == 3
    resyncs = [
        threading.Thread(target=p.for_resyncs().client(URL, "glpat-resync").get_runner, args=(5,)) for _ in range(3)
    ]
    for t in resyncs:
        t.start()
    for _ in resyncs:
        assert entered.acquire(timeout=5)
    with pytest.raises(GitLabThrottled, match="slots are in use"):
        p.for_resyncs().client(URL, "glpat-resync").get_runner(5)  # no fourth resync
    started = time.monotonic()
    assert p.client(URL, "glpat-event").get_runner(5).id == 5  # the event does not wait for them
    assert time.monotonic() - started < 1.0
    gate.set()
    for t in resyncs:
        t.join(5)
    assert all(not t.is_alive() for t in resyncs)
