"""A request budget per GitLab connection, and a pause per GitLab host shared by every connection to it.

GitLab rate-limits per user (GitLab.com: 2,000 authenticated requests per minute) and answers 429 with
`Retry-After` and `RateLimit-*` headers (https://docs.gitlab.com/security/rate_limits/). A connection is one token
family on one GitLab (a GitLabConnection, a ClusterGitLabConnection, or an inline URL and access token: whatever
identifies the GitLab user being counted), so each gets its own budget: it keeps the operator under a limit the
user sets, bounds how many calls are in flight at once, and serves event-driven work (create, update, delete) before
periodic resyncs. A 429 or `RateLimit-Remaining: 0` pauses every connection to that host (`HostPause`): GitLab's
other limits (per IP, per endpoint, a database migration's back-off) are not per user, and the operator cannot tell
which one answered.

Admission is a sliding window over the last 60 s: a request may start when fewer than `per_minute` requests are in
flight or were answered in the last 60 s. Counting answers rather than starts keeps the promise where GitLab counts,
at arrival: whatever a request's delay on the way, no 60 s at GitLab's end holds more than `per_minute` of them.
A caller that would have to wait longer than `max_wait` is refused at once with `BudgetExhausted`, which says how
long to wait: the caller's worker thread goes back to Kopf instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from enum import Enum

WINDOW = 60.0
# GitLab's own default when a 429 carries no usable header (`too_many_requests!` sends Retry-After: 60).
DEFAULT_PAUSE = 60.0


class Priority(Enum):
    EVENT = "event"  # a Runner was created, changed or deleted: someone is waiting for it
    RESYNC = "resync"  # periodic drift repair: may wait, and yields to events


class BudgetExhausted(Exception):
    """No request may be sent on this connection for `retry_after` seconds (its budget spent, or GitLab asked its
    host to pause)."""

    def __init__(self, host: str, retry_after: float, why: str):
        # No number of seconds in the message: it goes into a condition, and one problem is one message.
        super().__init__(f"GitLab at {host}: {why}; the call is retried when it may go")
        self.host = host
        self.retry_after = retry_after
        self.why = why


class HostPause:
    """The pause GitLab asked one host for: shared by every connection's budget to that host. Thread-safe."""

    def __init__(self, host: str, clock: Callable[[], float] = time.monotonic):
        self.host = host
        self._clock = clock
        self._lock = threading.Lock()
        self._until = 0.0

    def extend(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, self._clock() + seconds)

    def until(self) -> float:
        """The clock time the pause ends (in the past: no pause)."""
        with self._lock:
            return self._until

    def clear(self) -> None:
        with self._lock:
            self._until = 0.0


class ConnectionBudget:
    """Thread-safe admission control for one connection to a GitLab host: `admit` before a request, `release` once
    its answer is in, and report every answer through `observe`. `pause` is the host's, shared with the other
    connections to it (a budget of its own when not given)."""

    def __init__(
        self,
        host: str,
        *,
        per_minute: int,
        max_in_flight: int,
        max_wait: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        pause: HostPause | None = None,
    ):
        if per_minute < 1 or max_in_flight < 1:
            raise ValueError("per_minute and max_in_flight must be at least 1")
        self.host = host
        self.pause = pause if pause is not None else HostPause(host, clock)
        self.per_minute = per_minute
        self.max_in_flight = max_in_flight
        # Resyncs never take the last slots: an event always finds one free within one request's time.
        self.resync_in_flight = max(1, max_in_flight - max(1, max_in_flight // 4))
        self.max_wait = max_wait
        self._clock = clock
        self._wall_clock = wall_clock
        self._cond = threading.Condition()
        self._answered: deque[float] = deque()  # when the requests of the last 60 s were answered
        self._in_flight = 0
        self._events_waiting = 0
        self.waits = 0  # callers that had to wait (budget, pause or concurrency), for metrics
        self.waited_seconds = 0.0

    def admit(self, priority: Priority = Priority.EVENT, max_wait: float | None = None) -> None:
        """Count one request against the window and take an in-flight slot, waiting at most `max_wait` (default:
        the budget's); `release` must follow once the answer is in."""
        self._acquire(priority, self.max_wait if max_wait is None else max_wait)

    def release(self) -> None:
        with self._cond:
            self._answered.append(self._clock())
            self._in_flight -= 1
            self._cond.notify_all()

    def observe(self, status: int, headers: Mapping[str, str]) -> float | None:
        """Learn from an answer: a 429, or `RateLimit-Remaining: 0`, pauses every caller of every connection to the
        host. Returns the pause."""
        pause = None
        if status == 429:
            pause = self._header_pause(headers) or DEFAULT_PAUSE
        elif headers.get("RateLimit-Remaining", "").strip() == "0":
            pause = self._header_pause(headers)
        if pause:
            self.pause.extend(pause)
        return pause

    def paused_for(self) -> float:
        return max(0.0, self.pause.until() - self._clock())

    # --- internals ------------------------------------------------------------------------------------------

    def _acquire(self, priority: Priority, max_wait: float) -> None:
        deadline = self._clock() + max_wait
        waited = False
        started = self._clock()
        with self._cond:
            if priority is Priority.EVENT:
                self._events_waiting += 1
            try:
                while True:
                    now = self._clock()
                    blocked_until, why = self._blocked_until(now, priority)
                    if blocked_until is None:
                        break
                    if blocked_until > deadline:
                        raise BudgetExhausted(self.host, max(1.0, blocked_until - now), why)
                    waited = True
                    # Wake at the time the obstacle lifts, or when a slot frees (notify), whichever is first.
                    self._cond.wait(timeout=max(0.01, min(blocked_until, deadline) - now))
                self._in_flight += 1
                if waited:
                    self.waits += 1
                    self.waited_seconds += now - started
            finally:
                if priority is Priority.EVENT:
                    self._events_waiting -= 1

    def _blocked_until(self, now: float, priority: Priority) -> tuple[float | None, str]:
        """When this caller could next go (None: now), and why not yet. Caller holds the lock."""
        paused_until = self.pause.until()
        if paused_until > now:
            # Possibly seen on another connection to the host: a waiter rechecks at each wake-up (bounded waits).
            return paused_until, "GitLab asked the operator to slow down (429 or RateLimit-Remaining: 0)"
        while self._answered and self._answered[0] <= now - WINDOW:
            self._answered.popleft()
        if len(self._answered) + self._in_flight >= self.per_minute:
            frees = self._answered[0] + WINDOW if self._answered else now + WINDOW
            return frees, f"this connection's budget of {self.per_minute} requests per minute is spent"
        limit = self.max_in_flight if priority is Priority.EVENT else self.resync_in_flight
        if self._in_flight >= limit or (priority is Priority.RESYNC and self._events_waiting):
            # Frees when a request finishes; bounded by the HTTP timeout, so wait at most the deadline.
            return now + 0.05, f"all {limit} request slots are in use"
        return None, ""

    def _header_pause(self, headers: Mapping[str, str]) -> float | None:
        """Seconds to pause from `Retry-After` (seconds), `RateLimit-ResetTime` (HTTP date) or `RateLimit-Reset`
        (Unix seconds), the way gitlab-runner reads them."""
        retry_after = headers.get("Retry-After")
        if retry_after and retry_after.strip().isdigit():
            return float(retry_after.strip())
        reset_time = headers.get("RateLimit-ResetTime")
        if reset_time:
            try:
                return max(0.0, parsedate_to_datetime(reset_time).timestamp() - self._wall_clock())
            except (TypeError, ValueError):
                pass
        reset = headers.get("RateLimit-Reset", "").strip()
        if reset.isdigit():
            return max(0.0, float(reset) - self._wall_clock())
        return None
