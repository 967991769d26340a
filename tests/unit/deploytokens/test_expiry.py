from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from glrt_operator.deploytokens.expiry import expiry_date


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
    lifetime = datetime.combine(day, time(0, 0), tzinfo=UTC) - now  # GitLab's end of the token
    assert valid_for <= lifetime < valid_for + timedelta(days=1)


def test_expiry_date_from_another_timezone() -> None:
    from zoneinfo import ZoneInfo

    # 2026-11-23 20:00 in New York is 2026-11-24 01:00 UTC
    now = datetime(2026, 11, 23, 20, 0, tzinfo=ZoneInfo("America/New_York"))
    assert expiry_date(now, timedelta(hours=1)) == date(2026, 11, 25)
