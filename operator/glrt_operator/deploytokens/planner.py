"""What to do next for one `DeployToken` (pure): create, revoke after grace, reissue, revoke strays.

GitLab cannot rotate a deploy token, and shows its value once. So the token the Secret holds is the only usable
one: renewal creates the next token, writes the Secret, and revokes the previous one only after a grace period
(pods that read the old Secret keep pulling meanwhile). A token with our name that is neither current nor
waiting out its grace is a stray (a create whose reply was lost, or a crash before the Secret was written); its
value is unknown, so it cannot be adopted and is revoked before anything is created, which keeps at most two
active tokens per object (current + previous in grace) at any time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from ..core.gitlab import DeployTokenInfo
from ..core.renewal import renewal_time
from .model import DEFAULT_GRACE_PERIOD


@dataclass(frozen=True)
class Retiring:
    """A superseded token still active for pods that read the old Secret, until ``revoke_at``."""

    token_id: int
    revoke_at: datetime


@dataclass(frozen=True)
class DeployTokenState:
    """What the status and the Secret say (the fences included)."""

    token_id: int | None = None
    issued_at: datetime | None = None  # when the current token was created (GitLab does not list it)
    secret_token_id: int | None = None  # the id annotated on the Secret
    secret_issued_at: datetime | None = None  # and when that token was created
    retiring: tuple[Retiring, ...] = ()


class CreateReason(StrEnum):
    INITIAL = "no token yet"
    RENEWAL = "the current token is due for renewal"
    REVOKED = "the current token was revoked in GitLab"
    EXPIRED = "the current token has expired"
    MISSING = "the current token is gone from GitLab"
    SECRET_STALE = "the Secret does not hold the current token"
    SPEC_CHANGED = "the scopes or the username changed (GitLab cannot edit a deploy token)"


# The current token still works when it is replaced for these reasons: pods and kubelets that read the Secret
# before (or before someone edited it) keep using it, so it stays valid for the grace period.
GRACEFUL = frozenset({CreateReason.RENEWAL, CreateReason.SPEC_CHANGED, CreateReason.SECRET_STALE})


@dataclass(frozen=True)
class Revoke:
    token_id: int
    why: str


@dataclass(frozen=True)
class Plan:
    revoke: tuple[Revoke, ...] = ()  # do these first
    create: CreateReason | None = None  # then create the next token, write the Secret, record it
    keep_current_until: datetime | None = None  # with `create`: when to revoke the token being replaced (grace)
    next_check: datetime | None = None  # the earliest time anything becomes due
    retiring: tuple[Retiring, ...] = field(default=())  # what stays in the status after this plan's revocations
    adopt: int | None = None  # record this token (the Secret already holds it) as current before anything else


def plan(
    *,
    renew_before: timedelta,
    uid: str,
    name: str,
    tokens: Sequence[DeployTokenInfo],
    state: DeployTokenState,
    now: datetime,
    grace: timedelta = DEFAULT_GRACE_PERIOD,
    scopes: Sequence[str] | None = None,
    username: str | None = None,
) -> Plan:
    """The actions for now. ``tokens`` is GitLab's list for the scope (any names; only ``name`` is ours).
    ``scopes`` and ``username`` are what the spec asks for: a current token that differs is replaced."""
    ours = {t.id: t for t in tokens if t.name == name}
    adopt, state = _adopted(ours, state, now, grace)
    current = ours.get(state.token_id) if state.token_id is not None else None
    revoke, retiring = _due_revocations(ours, state, now)
    reason, due = _create_reason(state, current, now, renew_before, uid, scopes, username)

    keep_until = None
    if reason in GRACEFUL:
        # Never three active at once: a token still retiring from an earlier renewal goes now.
        revoke += [Revoke(r.token_id, "superseded twice") for r in retiring]
        retiring = []
        keep_until = now + grace

    candidates = [r.revoke_at for r in retiring]
    if due is not None and reason is None:
        candidates.append(due)
    if keep_until is not None:
        candidates.append(keep_until)
    return Plan(
        revoke=tuple(revoke),
        create=reason,
        keep_current_until=keep_until,
        next_check=min(candidates) if candidates else None,
        retiring=tuple(retiring),
        adopt=adopt,
    )


def _adopted(
    ours: Mapping[int, DeployTokenInfo], state: DeployTokenState, now: datetime, grace: timedelta
) -> tuple[int | None, DeployTokenState]:
    """A crash after the Secret was written and before the status was: the Secret is the truth. The token to adopt
    and the state as it then is; (None, state) otherwise."""
    held = ours.get(state.secret_token_id) if state.secret_token_id is not None else None
    if held is None or held.id == state.token_id or not held.active(now):
        return None, state
    old = [Retiring(state.token_id, now + grace)] if state.token_id is not None else []
    return held.id, DeployTokenState(
        token_id=held.id,
        issued_at=state.secret_issued_at,
        secret_token_id=held.id,
        secret_issued_at=state.secret_issued_at,
        retiring=(*state.retiring, *old),
    )


def _due_revocations(
    ours: Mapping[int, DeployTokenInfo], state: DeployTokenState, now: datetime
) -> tuple[list[Revoke], list[Retiring]]:
    """Retiring tokens whose grace is over, and strays; and the retiring tokens that stay."""
    revoke: list[Revoke] = []
    retiring: list[Retiring] = []
    for r in state.retiring:
        t = ours.get(r.token_id)
        if t is None or not t.active(now):
            continue  # already gone: nothing to do
        if now >= r.revoke_at:
            revoke.append(Revoke(r.token_id, "its grace period after renewal is over"))
        else:
            retiring.append(r)
    known = {state.token_id, *(r.token_id for r in state.retiring)}
    revoke += [
        Revoke(t.id, "a stray token (a lost reply or an interrupted renewal)")
        for t in ours.values()
        if t.id not in known and t.active(now)
    ]
    return revoke, retiring


def _create_reason(
    state: DeployTokenState,
    current: DeployTokenInfo | None,
    now: datetime,
    renew_before: timedelta,
    uid: str,
    scopes: Sequence[str] | None,
    username: str | None,
) -> tuple[CreateReason | None, datetime | None]:
    """Why a new token is needed now (None: it is not), and when the current one is due for renewal."""
    if state.token_id is None:
        return CreateReason.INITIAL, None
    if current is None:
        return CreateReason.MISSING, None
    if current.revoked:
        return CreateReason.REVOKED, None
    if not current.active(now):
        return CreateReason.EXPIRED, None
    if state.secret_token_id != current.id:
        return CreateReason.SECRET_STALE, None
    if (scopes is not None and set(current.scopes) != set(scopes)) or (username and current.username != username):
        return CreateReason.SPEC_CHANGED, None
    if current.expires_at is None:
        return None, None
    due = renewal_time(current.expires_at, state.issued_at, renew_before, uid)
    return (CreateReason.RENEWAL if now >= due else None), due


def to_revoke_on_delete(name: str, tokens: Sequence[DeployTokenInfo], now: datetime) -> list[int]:
    """Deletion: every active token carrying our name (current, retiring and strays); gone ones count as done."""
    return [t.id for t in tokens if t.name == name and t.active(now)]
