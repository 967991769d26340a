"""The request budgets inside the GitLab adapter: one budget per connection (URL and token family) shared by every
client of it, every request (deletions included) counted, GitLab's pauses honoured by every connection to the host,
resyncs behind events."""

from __future__ import annotations

import threading
import time
from datetime import date

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


def test_one_budget_per_connection_and_one_pause_per_host() -> None:
    p = pool(Recorder())
    assert p.budget(URL, "glpat-alice") is p.budget(URL, "glpat-alice")
    assert p.budget(URL, "glpat-alice") is not p.budget(URL, "glpat-bob")  # another token family
    assert p.budget(URL, "glpat-alice") is not p.budget("https://other.test/api/v4", "glpat-alice")
    assert p.budget(URL, "glpat-alice") is p.for_resyncs().budget(URL, "glpat-alice")  # the resync view shares them
    assert p.budget(URL) is p.budget("https://GITLAB.test/other/api/v4")  # calls without a token: one per host
    assert p.budget(URL, "glpat-alice").pause is p.budget(URL, "glpat-bob").pause is p.pause("https://GITLAB.test")
    assert p.budget(URL).pause is not p.budget("https://gitlab.test:8443/api/v4").pause
    assert p.budget(URL, "a").per_minute == 600 and p.budget(URL, "a").max_in_flight == 8  # the defaults


def test_every_call_counts_against_its_connections_budget_and_the_spent_budget_sends_nothing() -> None:
    recorder = Recorder()
    p = pool(recorder, per_minute=3, event_max_wait=0.0)
    alice, alice_again = p.client(URL, "glpat-alice"), p.client(URL, "glpat-alice")
    alice.get_runner(5)
    alice_again.delete_runner(5)
    alice.delete_manager("glrt-token", "s_000000000000")
    with pytest.raises(GitLabThrottled) as refused:
        alice_again.get_runner(5)
    assert len(recorder.seen) == 3  # the fourth call never left the operator
    assert refused.value.reason == Reason.GITLAB_THROTTLED and refused.value.retryable
    assert 55.0 < (refused.value.retry_after or 0) <= 60.0  # the first call leaves the window after 60 s
    assert "3 requests per minute" in str(refused.value) and "glrt-token" not in str(refused.value)
    # Another connection to the same host gets its full budget; so does the same token on another host.
    bob = p.client(URL, "glpat-bob")
    for _ in range(3):
        bob.get_runner(5)
    p.client("https://other.test/api/v4", "glpat-alice").get_runner(5)
    assert len(recorder.seen) == 7


def test_a_rotated_token_keeps_its_familys_budget() -> None:
    rotated = {"id": 9, "name": "ops", "scopes": ["api"], "active": True, "revoked": False, "token": "glpat-next"}
    rotated |= {"expires_at": "2027-01-01", "created_at": "2026-01-01T00:00:00Z", "user_id": 1}
    recorder = Recorder(httpx.Response(200, json=rotated))
    p = pool(recorder)
    old = p.budget(URL, "glpat-alice")
    p.client(URL, "glpat-alice").rotate_access_token_self(date(2027, 1, 1))
    assert p.budget(URL, "glpat-next") is old


def test_a_429_on_one_connection_pauses_every_connection_to_that_host() -> None:
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
        if request.url.path.endswith("/runners/5"):  # the resyncs' reads; the event reads runner 6
            entered.release()
            gate.wait(5)
        return httpx.Response(200, json=RUNNER_JSON)

    p = GitLabPool(transport=httpx.MockTransport(slow), max_in_flight=4, resync_max_wait=0.0)
    assert p.budget(URL, "glpat-resync").resync_in_flight == 3
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
    assert p.client(URL, "glpat-resync").get_runner(6).id == 5  # the event, same connection, does not wait for them
    assert time.monotonic() - started < 1.0
    gate.set()
    for t in resyncs:
        t.join(5)
    assert all(not t.is_alive() for t in resyncs)
