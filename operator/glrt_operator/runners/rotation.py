"""When the runner token must be rotated (pure).

The operator owns rotation: config.toml carries no `token_expires_at`, so gitlab-runner never rotates by itself
(https://docs.gitlab.com/runner/configuration/advanced-configuration/, `[[runners]]` token_expires_at) and the
token in the Secret is always the one GitLab accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..core.renewal import renewal_time
from .model import TokenRotation
from .status import RunnerStatus


@dataclass(frozen=True)
class TokenState:
    """The token as stored in the token Secret."""

    token: str
    expires_at: datetime | None
    obtained_at: datetime | None

    def __repr__(self) -> str:
        return f"TokenState(token=<redacted>, expires_at={self.expires_at!r}, obtained_at={self.obtained_at!r})"


def renewal_due_at(state: TokenState, renew_before: timedelta, runner_uid: str) -> datetime | None:
    """When to renew a token that expires (`core.renewal.renewal_time`); None when it never expires."""
    if state.expires_at is None:
        return None
    return renewal_time(state.expires_at, state.obtained_at, renew_before, runner_uid)


@dataclass(frozen=True)
class RotationCause:
    """Why the token must be rotated: `kind` for the rotations metric (a fixed set), `text` for an Event."""

    kind: str
    text: str


def rotation_cause(
    rotation: TokenRotation, status: RunnerStatus, state: TokenState, now: datetime, runner_uid: str
) -> RotationCause | None:
    """Why the token must be rotated now; None when it need not be."""
    if status.rotation_started_at:
        return RotationCause("interrupted", "finishing a rotation that was interrupted before the new token was stored")
    if rotation.requested_at and rotation.requested_at != status.rotation_requested_at:
        text = f"rotation requested (spec.tokenRotation.requestedAt={rotation.requested_at})"
        return RotationCause("requested", text)
    due = renewal_due_at(state, rotation.renew_before, runner_uid)
    if due is not None and now >= due:
        return RotationCause("expiring", f"the token expires at {state.expires_at:%Y-%m-%dT%H:%M:%SZ}")
    return None
