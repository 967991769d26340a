"""Resync pacing from the GitLab budget: when the fleet's resyncs would take more than a share of the requests per
minute the operator may send (GLRT_RESYNC_BUDGET_SHARE, a tenth by default), each object's resync interval
stretches until they fit. Pure bookkeeping, fed with what each resync cost: batch reads make a resync cheap, and
the interval stretches only as far as the real cost asks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Weight of the newest cost in an object's running average (a batch read is paid by whichever Runner asks first).
_SMOOTHING = 0.3


class Pacing:
    def __init__(self, base: float, share: float, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.base, self.share, self.per_minute = base, share, per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._cost: dict[str, float] = {}  # uid -> GitLab calls per resync (running average)
        self._last: dict[str, float] = {}  # uid -> when its last resync ran

    def effective_interval(self) -> float:
        """The base interval, or longer: the fleet's calls per cycle at `share` of the budget per minute."""
        with self._lock:
            calls = sum(self._cost.values())
        return max(self.base, 60.0 * calls / (self.share * self.per_minute))

    def due(self, uid: str) -> bool:
        """Is this object's resync due? (Its timer fires every base interval; a stretched interval skips ticks.)"""
        with self._lock:
            last = self._last.get(uid)
        # Half a base interval of slack: a timer tick that comes a little early still counts.
        return last is None or self._clock() - last >= self.effective_interval() - self.base / 2

    def record(self, uid: str, calls: int) -> None:
        """A resync of `uid` ran now and made `calls` GitLab calls."""
        with self._lock:
            previous = self._cost.get(uid)
            self._cost[uid] = calls if previous is None else previous + _SMOOTHING * (calls - previous)
            self._last[uid] = self._clock()

    def forget(self, uid: str) -> None:
        with self._lock:
            self._cost.pop(uid, None)
            self._last.pop(uid, None)
