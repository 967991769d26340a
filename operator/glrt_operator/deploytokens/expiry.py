"""When a deploy token expires and when to renew it (pure).

GitLab takes `expires_at` as a date and the token stops working at 00:00 UTC of that date. The operator asks for
the first midnight at or after `now + validFor`, so every token lives AT LEAST `validFor` (and less than
`validFor` + 1 day): a lifetime shorter than asked could fall below `renewBefore`, and rounding down would even
give an already-dead token for lifetimes under a day. Renewal uses the expiry GitLab reports, never the computed
one, so the two cannot drift.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta

JITTER_FRACTION = 0.1  # as for runner tokens: renewals of objects created together spread over 10% of the window


def expiry_date(now: datetime, valid_for: timedelta) -> date:
    """The `expires_at` date to send: the token then dies at the first midnight UTC at or after now + valid_for."""
    target = (now + valid_for).astimezone(UTC)
    day = target.date()
    if target.time() != time(0, 0):
        day += timedelta(days=1)
    return day


def expiry_instant(day: date) -> datetime:
    """The moment GitLab stops accepting a token with this `expires_at` date."""
    return datetime.combine(day, time(0, 0), tzinfo=UTC)


def renewal_time(expires_at: datetime, created_at: datetime | None, renew_before: timedelta, uid: str) -> datetime:
    """When to create the next token: `renewBefore` ahead of expiry, capped at half the token's lifetime (a token
    made shorter than planned, e.g. by a test server, is renewed at mid-life instead of at once), and moved earlier
    by a deterministic per-object jitter of up to 10% of that window."""
    window = renew_before
    if created_at is not None and expires_at > created_at:
        window = min(window, (expires_at - created_at) / 2)
    fraction = int(hashlib.sha256(uid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return expires_at - window - window * JITTER_FRACTION * fraction
