"""The typed spec of a `GitLabConnection` / `ClusterGitLabConnection`, and the pure rules about its GitLab and its
token: the supported GitLab releases, the scopes it needs, whether it can rotate itself, when it is renewed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from ..core.connection import GitLabSpec, parse_endpoint
from ..core.gitlab import AccessTokenInfo, InstanceInfo
from ..core.spec import SecretKeyRef, SpecError, duration, get_field, secret_ref

# The oldest GitLab the operator supports: `POST /user/runners` (glrt- tokens) appeared in 15.10.
MINIMUM_GITLAB = (15, 10, 0)
# `POST /personal_access_tokens/self/rotate` appeared in 16.10 (scope api); the `self_rotate` scope in 17.9.
SELF_ROTATE_SINCE = (16, 10, 0)
SELF_ROTATE_SCOPE_SINCE = (17, 9, 0)
# What the operator uses that depends on the release (https://docs.gitlab.com/api/runners/, .../metadata/).
FEATURES = {
    "runnerManagers": (17, 1, 0),  # GET /runners/:id/managers
    "deleteRunnerManager": (16, 0, 0),  # DELETE /runners/managers
    "maintenanceNoteInRunnerApi": (16, 10, 0),
    "tokenSelfRotation": SELF_ROTATE_SINCE,
    "selfRotateScope": SELF_ROTATE_SCOPE_SINCE,
}
# A token the connection can serve with: api, or what Runners need (create_runner; manage_runner to update, rotate
# and delete; read_api to list).
USABLE_SCOPES = ({"api"}, {"create_runner"})
DEFAULT_RENEW_BEFORE = timedelta(days=30)
DEFAULT_VALID_FOR = timedelta(days=90)
MAX_VALID_FOR = timedelta(days=365)  # GitLab refuses an expiry more than 365 days ahead


@dataclass(frozen=True)
class ConnectionSpec:
    endpoint: GitLabSpec
    rotation_enabled: bool = True
    renew_before: timedelta = DEFAULT_RENEW_BEFORE
    valid_for: timedelta = DEFAULT_VALID_FOR
    # Another api token of the token's user (or an administrator's): repairs a rotation whose answer was lost.
    recovery: SecretKeyRef | None = None

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> ConnectionSpec:
        endpoint = parse_endpoint(spec, "spec")
        rotation = get_field(spec, "tokenRotation", Mapping, "spec") or {}
        where = "spec.tokenRotation"
        enabled = get_field(rotation, "enabled", bool, where, True)
        renew_before = duration(rotation, "renewBefore", where, DEFAULT_RENEW_BEFORE)
        valid_for = duration(rotation, "validFor", where, DEFAULT_VALID_FOR)
        if valid_for > MAX_VALID_FOR:
            raise SpecError(f"{where}.validFor must be at most 8760h (GitLab refuses expiry dates beyond a year)")
        if valid_for <= renew_before:
            raise SpecError(f"{where}.validFor must be longer than {where}.renewBefore")
        recovery = secret_ref(rotation, "recoverySecretRef", where, "token")
        if recovery is not None and recovery == endpoint.credentials:
            raise SpecError(f"{where}.recoverySecretRef must name another token than spec.credentialsSecretRef")
        return cls(
            endpoint=endpoint,
            rotation_enabled=enabled,
            renew_before=renew_before,
            valid_for=valid_for,
            recovery=recovery,
        )


def features(instance: InstanceInfo) -> list[str]:
    return sorted(name for name, since in FEATURES.items() if instance.release >= since)


def too_old(instance: InstanceInfo) -> str | None:
    if instance.release >= MINIMUM_GITLAB:
        return None
    oldest = ".".join(map(str, MINIMUM_GITLAB[:2]))
    return f"GitLab {instance.version} is older than {oldest}, the oldest the operator supports: upgrade GitLab."


def scopes_missing(token: AccessTokenInfo) -> str | None:
    if any(needed <= set(token.scopes) for needed in USABLE_SCOPES):
        return None
    return (
        f"The access token {token.name!r} has scopes {', '.join(token.scopes) or 'none'}: it needs api, or "
        "create_runner, manage_runner and read_api for Runners only. Create a token with those scopes."
    )


def rotation_problem(instance: InstanceInfo, token: AccessTokenInfo) -> str | None:
    """Why the token cannot rotate itself, or None (https://docs.gitlab.com/api/personal_access_tokens/)."""
    release = instance.release
    if release < SELF_ROTATE_SINCE:
        return (
            f"GitLab {instance.version} has no token self-rotation (16.10+): renew the token by hand before it expires."
        )
    scopes = set(token.scopes)
    if "api" in scopes:
        return None
    if "self_rotate" in scopes:
        if release >= SELF_ROTATE_SCOPE_SINCE:
            return None
        return f"GitLab {instance.version} accepts the self_rotate scope only from 17.9: add scope api to the token."
    return "The token has neither scope api nor self_rotate, so it cannot rotate itself: create one with self_rotate."


def expiry_instant(expires_at: date | None) -> datetime | None:
    """GitLab refuses a token from 00:00 UTC of its `expires_at` date."""
    return datetime.combine(expires_at, time(0), tzinfo=UTC) if expires_at else None


def renewal_time(expires_at: date | None, renew_before: timedelta) -> datetime | None:
    instant = expiry_instant(expires_at)
    return instant - renew_before if instant else None


def next_expiry(now: datetime, valid_for: timedelta) -> date:
    """The explicit `expires_at` of a rotation: the first date whose 00:00 UTC is at least `valid_for` ahead (so the
    new token is not due again at once), never beyond GitLab's limit of today + 365 days."""
    end = now + valid_for
    day = end.date() if end.time() == time(0) else end.date() + timedelta(days=1)
    return min(day, now.date() + MAX_VALID_FOR)


def renewal_too_long(now: datetime, spec: ConnectionSpec) -> str | None:
    """A token renewed now would be due again at once (GitLab caps its expiry at today + 365 days): the operator
    would rotate it at every look. Refused, with what to change."""
    renewal = renewal_time(next_expiry(now, spec.valid_for), spec.renew_before)
    if renewal is not None and renewal > now:
        return None
    return (
        "spec.tokenRotation.renewBefore is longer than the lifetime GitLab gives a renewed token (at most 365 days, "
        "counted from today's date): shorten renewBefore."
    )
