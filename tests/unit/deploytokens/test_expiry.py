from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from glrt_operator.deploytokens.expiry import expiry_date, expiry_instant, renewal_time


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "valid_for", "expected"),
    [
        # a target exactly at midnight is kept: the token lives exactly validFor
        (at(2026, 11, 23, 0, 0, 0), timedelta(hours=720), date(2026, 12, 23)),
        # one second after midnight: rounded up to the next midnight, never down
        (at(2026, 11, 23, 0, 0, 1), timedelta(hours=24), date(2026, 11, 25)),
        (at(2026, 11, 23, 23, 59, 59), timedelta(seconds=1), date(2026, 11, 24)),
        (at(2026, 11, 23, 23, 59, 59), timedelta(seconds=2), date(2026, 11, 25)),
        # a lifetime under a day still gives a live token
        (at(2026, 11, 23, 23, 0, 0), timedelta(minutes=30), date(2026, 11, 24)),
        # leap day and month/year ends
        (at(2028, 2, 28, 12, 0, 0), timedelta(hours=12), date(2028, 2, 29)),
        (at(2028, 2, 28, 12, 0, 1), timedelta(hours=12), date(2028, 3, 1)),
        (at(2027, 2, 28, 11, 0, 0), timedelta(hours=12), date(2027, 3, 1)),  # no Feb 29 in 2027
        (at(2026, 4, 30, 6, 0, 0), timedelta(hours=1), date(2026, 5, 1)),
        (at(2026, 12, 31, 23, 59, 59), timedelta(seconds=1), date(2027, 1, 1)),
    ],
)
def test_expiry_date_gives_at_least_valid_for(now: datetime, valid_for: timedelta, expected: date) -> None:
    day = expiry_date(now, valid_for)
    assert day == expected
    lifetime = expiry_instant(day) - now
    assert valid_for <= lifetime < valid_for + timedelta(days=1)


def test_expiry_date_from_another_timezone() -> None:
    from zoneinfo import ZoneInfo

    # 2026-11-23 20:00 in New York is 2026-11-24 01:00 UTC
    now = datetime(2026, 11, 23, 20, 0, tzinfo=ZoneInfo("America/New_York"))
    assert expiry_date(now, timedelta(hours=1)) == date(2026, 11, 25)


def test_expiry_instant_is_midnight_utc() -> None:
    assert expiry_instant(date(2028, 2, 29)).isoformat() == "2028-02-29T00:00:00+00:00"


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
