"""When a token is renewed (core.renewal): the same rule for runner tokens and deploy tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from glrt_operator.core.renewal import renewal_time


def at(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def test_renewal_time_window_cap_and_jitter() -> None:
    expires = at(2026, 12, 23)
    created = expires - timedelta(hours=720)
    due = renewal_time(expires, created, timedelta(hours=168), "uid-a")
    # renewBefore ahead, moved earlier by at most 10% of the window
    assert expires - timedelta(hours=168) * 1.1 <= due <= expires - timedelta(hours=168)
    assert due == renewal_time(expires, created, timedelta(hours=168), "uid-a")  # deterministic
    assert due != renewal_time(expires, created, timedelta(hours=168), "uid-b")  # spread per object
    # a token shorter than planned (1h) is renewed around mid-life, not at once
    short = renewal_time(expires, expires - timedelta(hours=1), timedelta(hours=168), "uid-a")
    assert expires - timedelta(minutes=33) <= short <= expires - timedelta(minutes=30)
    # unknown creation time: the plain window
    plain = renewal_time(expires, None, timedelta(hours=2), "uid-a")
    assert expires - timedelta(hours=2.2) <= plain <= expires - timedelta(hours=2)


def test_jitter_spreads_a_fleet() -> None:
    expires = at(2026, 12, 23)
    times = {renewal_time(expires, None, timedelta(hours=100), f"uid-{i}") for i in range(50)}
    assert len(times) == 50
    assert max(times) - min(times) > timedelta(hours=5)  # over most of the 10 h jitter range
