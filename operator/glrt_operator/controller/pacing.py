"""Resync pacing from the GitLab budgets: when the resyncs on one connection would take more than a share of the
requests per minute its budget allows (GLRT_RESYNC_BUDGET_SHARE, a tenth by default), the resync interval of each
object on that connection stretches until they fit; objects on other connections keep theirs. Pure bookkeeping,
fed with what each resync cost and on which budget: batch reads make a resync cheap, and the interval stretches
only as far as the real cost asks.

A cycle's cost is the sum of each object's last resync, not of running averages: a batch read is paid by whichever
resync asks first, and the sum still counts it once per cycle. An average would also keep a one-off cost (the token
check of a Runner whose managers had not polled yet, every Runner of a new fleet) for several resyncs, and the
stretch it causes would delay exactly the resyncs that bring it down."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Mapping


class Pacing:
    def __init__(self, base: float, share: float, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        """`per_minute`: the budget of each connection (GLRT_GITLAB_REQUESTS_PER_MINUTE)."""
        self.base, self.share, self.per_minute = base, share, per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._cost: dict[str, int] = {}  # uid -> the GitLab calls of its last resync
        self._budget: dict[str, Hashable] = {}  # uid -> the budget (connection) its resyncs are paid from
        self._last: dict[str, float] = {}  # uid -> when its last resync ran

    def effective_interval(self, uid: str | None = None) -> float:
        """The base interval, or longer: the calls per cycle of the objects on `uid`'s connection at `share` of its
        budget per minute. Without `uid` (the metric): the longest of any connection."""
        with self._lock:
            totals: dict[Hashable, int] = {}
            for other, cost in self._cost.items():
                key = self._budget.get(other)
                totals[key] = totals.get(key, 0) + cost
            if uid is None:
                calls = max(totals.values(), default=0)
            else:
                calls = totals.get(self._budget.get(uid), 0) if uid in self._cost else 0
        return max(self.base, 60.0 * calls / (self.share * self.per_minute))

    def due(self, uid: str) -> bool:
        """Is this object's resync due? (Its timer fires every base interval; a stretched interval skips ticks.)"""
        with self._lock:
            last = self._last.get(uid)
        # Half a base interval of slack: a timer tick that comes a little early still counts.
        return last is None or self._clock() - last >= self.effective_interval(uid) - self.base / 2

    def record(self, uid: str, calls: int | Mapping[Hashable, int]) -> None:
        """A resync of `uid` ran now and made `calls` GitLab calls: a number, or a count per budget (the object's
        connection is the budget most of them went through; a resync served from caches keeps the one it had)."""
        by_budget: Mapping[Hashable, int] = {None: calls} if isinstance(calls, int) else calls
        total = sum(by_budget.values())
        with self._lock:
            if total:
                self._budget[uid] = max(by_budget, key=lambda key: by_budget[key])
            self._cost[uid] = total
            self._last[uid] = self._clock()

    def forget(self, uid: str) -> None:
        with self._lock:
            self._cost.pop(uid, None)
            self._budget.pop(uid, None)
            self._last.pop(uid, None)
