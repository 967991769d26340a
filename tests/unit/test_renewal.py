"""When a token is renewed (core.renewal): the same rule for runner tokens and deploy tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from glrt_operator.core.renewal import renewal, renewal_time


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
    # a token shorter than planned (1h) is renewed at two thirds of its life, not at once
    short = renewal_time(expires, expires - timedelta(hours=1), timedelta(hours=168), "uid-a")
    assert expires - timedelta(minutes=22) <= short <= expires - timedelta(minutes=20)
    # unknown creation time: the plain window
    plain = renewal_time(expires, None, timedelta(hours=2), "uid-a")
    assert expires - timedelta(hours=2.2) <= plain <= expires - timedelta(hours=2)


def test_jitter_spreads_a_fleet() -> None:
    expires = at(2026, 12, 23)
    times = {renewal_time(expires, None, timedelta(hours=100), f"uid-{i}") for i in range(50)}
    assert len(times) == 50
    assert max(times) - min(times) > timedelta(hours=5)  # over most of the 10 h jitter range


@pytest.mark.parametrize(
    ("lifetime", "renew_before", "window", "fallback"),
    [
        (timedelta(hours=48), timedelta(hours=47, minutes=59), timedelta(hours=47, minutes=59), False),
        (
            timedelta(hours=48),
            timedelta(hours=47, minutes=59, seconds=59),
            timedelta(hours=47, minutes=59, seconds=59),
            False,
        ),
        (timedelta(hours=48), timedelta(hours=48), timedelta(hours=16), True),  # not shorter: two thirds
        (timedelta(hours=48), timedelta(hours=72), timedelta(hours=16), True),
        (timedelta(hours=720), timedelta(hours=168), timedelta(hours=168), False),
        (timedelta(days=365), timedelta(days=30), timedelta(days=30), False),
    ],
)
def test_renew_before_is_honoured_whenever_it_is_shorter_than_the_lifetime(
    lifetime: timedelta, renew_before: timedelta, window: timedelta, fallback: bool
) -> None:
    issued = at(2026, 12, 1)
    expires = issued + lifetime
    for uid in ("uid-a", "uid-b", "uid-c"):
        r = renewal(expires, issued, renew_before, uid)
        assert (r.window, r.fallback) == (window, fallback)
        assert issued + timedelta(minutes=1) <= r.at  # the jitter never moves it before the token is a minute old
        assert r.at <= max(expires - window, issued + timedelta(minutes=1))


def test_validfor_48h_renewbefore_47h59m_renews_in_the_first_minutes() -> None:
    issued = at(2026, 12, 1)
    r = renewal(issued + timedelta(hours=48), issued, timedelta(hours=47, minutes=59), "any-uid")
    assert r.at == issued + timedelta(minutes=1) and not r.fallback


def test_a_renew_before_a_second_short_of_the_lifetime_renews_once_a_minute_not_in_a_loop() -> None:
    issued = at(2026, 12, 1)
    r = renewal(issued + timedelta(hours=1, seconds=1), issued, timedelta(hours=1), "any-uid")
    assert r.at == issued + timedelta(minutes=1)
    tiny = renewal(issued + timedelta(seconds=6), issued, timedelta(hours=1), "any-uid")  # GitLab cut it short
    assert tiny.fallback and tiny.at >= issued + timedelta(seconds=2)
