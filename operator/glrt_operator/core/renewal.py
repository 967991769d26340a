"""When to renew a token that expires (pure), the same rule for every token the operator keeps alive."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

# Tokens of objects created together renew spread over 10% of their renewal window, not in the same second.
JITTER_FRACTION = 0.1


def jitter_fraction(uid: str) -> float:
    """A number in [0, 1] fixed for one object (its uid): the same on every call and after restarts."""
    return int(hashlib.sha256(uid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def renewal_time(expires_at: datetime, issued_at: datetime | None, renew_before: timedelta, uid: str) -> datetime:
    """When to renew a token that expires at `expires_at`: `renew_before` ahead of it, capped at half the token's
    lifetime when it is known (a short-lived token is renewed at mid-life instead of on every reconcile), and moved
    earlier by the object's jitter of up to 10% of that window."""
    window = renew_before
    if issued_at is not None and expires_at > issued_at:
        window = min(window, (expires_at - issued_at) / 2)
    return expires_at - window - window * JITTER_FRACTION * jitter_fraction(uid)
