"""When a deploy token expires (pure).

GitLab takes `expires_at` as a date and the token stops working at 00:00 UTC of that date. The operator asks for
the first midnight at or after `now + validFor`, so every token lives AT LEAST `validFor` (and less than
`validFor` + 1 day): a lifetime shorter than asked could fall below `renewBefore`, and rounding down would even
give an already-dead token for lifetimes under a day. Renewal (`core.renewal`) uses the expiry GitLab reports, never
the computed one, so the two cannot drift.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta


def expiry_date(now: datetime, valid_for: timedelta) -> date:
    """The `expires_at` date to send: the token then dies at the first midnight UTC at or after now + valid_for."""
    target = (now + valid_for).astimezone(UTC)
    day = target.date()
    if target.time() != time(0, 0):
        day += timedelta(days=1)
    return day
