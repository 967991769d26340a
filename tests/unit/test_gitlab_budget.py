"""The per-connection request budget: sliding window, pauses from GitLab's headers (shared by the host),
priorities, bounded concurrency."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from glrt_operator.adapters.gitlab.budget import WINDOW, BudgetExhausted, ConnectionBudget, HostPause, Priority


class FakeClock:
    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


def budget(clock: FakeClock, **kwargs: object) -> ConnectionBudget:
    settings: dict[str, object] = {"per_minute": 3, "max_in_flight": 4, "max_wait": 0.0, "wall_clock": clock}
    settings.update(kwargs)
    return ConnectionBudget("gitlab.example.com", clock=clock, **settings)  # type: ignore[arg-type]


@contextmanager
def slot(b: ConnectionBudget, priority: Priority = Priority.EVENT) -> Iterator[None]:
    """One request as the GitLab session makes it: admitted, sent, released once answered."""
    b.admit(priority)
    try:
        yield
    finally:
        b.release()


def send(b: ConnectionBudget, priority: Priority = Priority.EVENT) -> None:
    with slot(b, priority):
        pass


def test_no_window_of_sixty_seconds_holds_more_than_the_budget() -> None:
    clock = FakeClock()
    b = budget(clock)
    for offset in (0.0, 10.0, 20.0):
        clock.now = 1000.0 + offset
        send(b)
    clock.now = 1000.0 + 59.9
    with pytest.raises(BudgetExhausted) as refused:
        send(b)
    assert refused.value.retry_after == pytest.approx(1.0)  # the first request leaves the window at 1060
    assert "3 requests per minute" in str(refused.value)
    clock.now = 1000.0 + WINDOW
    send(b)  # the first admission has left the window
    with pytest.raises(BudgetExhausted) as again:
        send(b)
    assert again.value.retry_after == pytest.approx(10.0)  # the next one leaves at 1070


def test_a_request_counts_until_sixty_seconds_after_its_answer() -> None:
    """GitLab counts a request when it arrives, somewhere between its start and its answer: counting it from the
    answer keeps every 60 s at GitLab's end within the budget, however long the way."""
    clock = FakeClock()
    b = budget(clock, per_minute=1)
    b.admit()
    clock.now += 30.0  # a slow answer
    with pytest.raises(BudgetExhausted):
        send(b)  # in flight: still counts
    b.release()
    clock.now += 59.9
    with pytest.raises(BudgetExhausted) as refused:
        send(b)
    assert refused.value.retry_after == pytest.approx(1.0)  # max(1 s, 0.1 s)
    clock.now += 0.1
    send(b)


def test_a_429_with_retry_after_pauses_every_caller() -> None:
    clock = FakeClock()
    b = budget(clock, per_minute=100)
    assert b.observe(429, {"Retry-After": "30"}) == 30.0
    for priority in Priority:
        with pytest.raises(BudgetExhausted) as refused:
            send(b, priority)
        assert refused.value.retry_after == pytest.approx(30.0)
        assert "429" in refused.value.why
    clock.now += 30.0
    send(b)


def test_pause_headers_in_gitlab_runner_order() -> None:
    clock = FakeClock(start=1_700_000_000.0)
    b = budget(clock, per_minute=100)
    # RateLimit-ResetTime (an HTTP date) when Retry-After is absent; RateLimit-Reset (Unix seconds) last.
    assert b.observe(429, {"RateLimit-ResetTime": "Tue, 14 Nov 2023 22:13:40 GMT"}) == pytest.approx(20.0)
    assert b.observe(429, {"RateLimit-Reset": str(int(clock.now) + 7)}) == pytest.approx(7.0)
    assert b.observe(429, {}) == 60.0  # GitLab's default Retry-After
    assert b.observe(429, {"Retry-After": "soon"}) == 60.0  # not integer seconds: ignored, as gitlab-runner does


def test_remaining_zero_pauses_until_reset_without_a_429() -> None:
    clock = FakeClock()
    b = budget(clock, per_minute=100)
    assert b.observe(200, {"RateLimit-Remaining": "0", "RateLimit-Reset": str(int(clock.now) + 12)}) == 12.0
    assert b.paused_for() == pytest.approx(12.0)
    assert b.observe(200, {"RateLimit-Remaining": "5", "RateLimit-Reset": str(int(clock.now) + 99)}) is None
    assert b.paused_for() == pytest.approx(12.0)


def test_a_short_wait_is_waited_out_not_refused() -> None:
    b = ConnectionBudget("h", per_minute=100, max_in_flight=2, max_wait=5.0)
    b.observe(429, {"Retry-After": "1"})
    started = time.monotonic()
    send(b)
    assert 0.9 <= time.monotonic() - started < 3.0
    assert b.waits == 1


def test_resyncs_leave_slots_for_events_and_yield_to_them() -> None:
    b = ConnectionBudget("h", per_minute=1000, max_in_flight=4, max_wait=2.0)
    assert b.resync_in_flight == 3
    release = threading.Event()
    holding = threading.Barrier(5)  # three resyncs, one event, this test

    def hold(priority: Priority) -> None:
        with slot(b, priority):
            holding.wait()
            release.wait(5)

    threads = [threading.Thread(target=hold, args=(Priority.RESYNC,)) for _ in range(3)]
    for t in threads:
        t.start()
    # A fourth resync finds no resync slot, but an event still gets the reserved one at once.
    event = threading.Thread(target=hold, args=(Priority.EVENT,))
    event.start()
    holding.wait(timeout=5)
    b.max_wait = 0.2
    with pytest.raises(BudgetExhausted, match="request slots are in use"):
        send(b, Priority.RESYNC)
    release.set()
    for t in [*threads, event]:
        t.join(5)
    send(b, Priority.RESYNC)


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ConnectionBudget("h", per_minute=0, max_in_flight=1)


def test_two_connections_to_one_host_each_get_their_full_budget_and_share_its_pause() -> None:
    clock = FakeClock()
    host = HostPause("gitlab.example.com", clock)
    alice, bob = budget(clock, pause=host), budget(clock, pause=host)
    for _ in range(3):
        send(alice)
    with pytest.raises(BudgetExhausted, match="3 requests per minute"):
        send(alice)
    for _ in range(3):
        send(bob)  # alice's spent budget is not bob's
    bob.observe(429, {"Retry-After": "20"})
    fresh = budget(clock, pause=host)  # a third connection, nothing sent yet
    for b in (alice, fresh):
        with pytest.raises(BudgetExhausted, match="429") as paused:
            send(b)
        assert paused.value.retry_after == pytest.approx(20.0)
    clock.now += 20.0
    send(fresh)
