"""When to renew a token that expires (pure), the same rule for every token the operator keeps alive.

`renewBefore` is honoured as written whenever it is shorter than the token's lifetime (cert-manager's rule for
certificates). Only when it is not (GitLab gave the token a shorter life than asked, or the user asked for more
than the lifetime) does the token renew at two thirds of its life. A per-object jitter moves the time earlier, by at
most a tenth of the window, and never before the token is a minute old.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

JITTER_FRACTION = 0.1
FALLBACK_FRACTION = 1 / 3  # of the lifetime: renew at two thirds of it
# A token is never renewed younger than this (or a third of its life, if shorter): a renewBefore just under the
# lifetime renews each token once a minute at most, never in a loop.
MIN_AGE = timedelta(minutes=1)


def jitter_fraction(uid: str) -> float:
    """A number in [0, 1] fixed for one object (its uid): the same on every call and after restarts."""
    return int(hashlib.sha256(uid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


@dataclass(frozen=True)
class Renewal:
    """When a token renews, and with which window: `fallback` when renewBefore could not be honoured."""

    at: datetime
    window: timedelta
    fallback: bool


def renewal(expires_at: datetime, issued_at: datetime | None, renew_before: timedelta, uid: str) -> Renewal:
    """When to renew a token that expires at `expires_at` (issued at `issued_at`, when known)."""
    lifetime = expires_at - issued_at if issued_at is not None and expires_at > issued_at else None
    fallback = lifetime is not None and renew_before >= lifetime
    window = lifetime * FALLBACK_FRACTION if lifetime is not None and fallback else renew_before
    # Room for the jitter: within the window, and never earlier than the token's issue.
    room = window if lifetime is None else min(window, lifetime - window)
    at = expires_at - window - room * JITTER_FRACTION * jitter_fraction(uid)
    if lifetime is not None and issued_at is not None:
        at = max(at, issued_at + min(MIN_AGE, lifetime * FALLBACK_FRACTION))
    return Renewal(at=at, window=window, fallback=fallback)


def renewal_time(expires_at: datetime, issued_at: datetime | None, renew_before: timedelta, uid: str) -> datetime:
    """`renewal(...).at`."""
    return renewal(expires_at, issued_at, renew_before, uid).at
