"""When the runner token must be rotated (pure).

The operator owns rotation: config.toml carries no `token_expires_at`, so gitlab-runner never rotates by itself
(https://docs.gitlab.com/runner/configuration/advanced-configuration/, `[[runners]]` token_expires_at) and the
token in the Secret is always the one GitLab accepts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from .model import TokenRotation
from .status import RunnerStatus

JITTER_FRACTION = 0.1  # a fleet created together spreads its renewals over 10% of the renewal window


@dataclass(frozen=True)
class TokenState:
    """The token as stored in the token Secret."""

    token: str
    expires_at: datetime | None
    obtained_at: datetime | None

    def __repr__(self) -> str:
        return f"TokenState(token=<redacted>, expires_at={self.expires_at!r}, obtained_at={self.obtained_at!r})"


def renewal_due_at(state: TokenState, renew_before: timedelta, runner_uid: str) -> datetime | None:
    """When to renew a token that expires; None when it never expires.

    `renewBefore` is capped at half the token's lifetime, so a short-lived token (GitLab allows 2 hours) with the
    default 72h is renewed at mid-life instead of on every reconcile. A deterministic per-Runner jitter moves the
    time earlier by up to 10% of the window."""
    if state.expires_at is None:
        return None
    window = renew_before
    if state.obtained_at is not None and state.expires_at > state.obtained_at:
        window = min(window, (state.expires_at - state.obtained_at) / 2)
    fraction = int(hashlib.sha256(runner_uid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return state.expires_at - window - window * JITTER_FRACTION * fraction


def rotation_reason(
    rotation: TokenRotation, status: RunnerStatus, state: TokenState, now: datetime, runner_uid: str
) -> str | None:
    """Why the token must be rotated now, in words for an Event; None when it need not be."""
    if status.rotation_started_at:
        return "finishing a rotation that was interrupted before the new token was stored"
    if rotation.requested_at and rotation.requested_at != status.rotation_requested_at:
        return f"rotation requested (spec.tokenRotation.requestedAt={rotation.requested_at})"
    due = renewal_due_at(state, rotation.renew_before, runner_uid)
    if due is not None and now >= due:
        return f"the token expires at {state.expires_at:%Y-%m-%dT%H:%M:%SZ}"
    return None
