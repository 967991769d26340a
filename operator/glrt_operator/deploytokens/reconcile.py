"""Keeping one `DeployToken`'s token alive in its Secret: create, renew, reissue, revoke strays, and delete.

Level-based: each call lists the scope's deploy tokens (one GET), asks the pure planner what is due, and does only
that. Steady state makes no write to GitLab or the cluster.

The one call that is not idempotent, `POST .../deploy_tokens`, is made inside a fence (`status.creationStartedAt`)
and every token it makes carries this object's name marker (`glrt-<ns>-<name>-<uid8>`). Its value is shown once
and goes straight into the Secret, annotated with its id, before the status records it. So after a crash or a lost
reply: a token the Secret holds is adopted; one it does not hold (its value lost) is a stray and revoked before the
next is created. Either way one active token per creation remains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .. import metrics
from ..core.api import DEPLOY_TOKEN
from ..core.conditions import set_condition
from ..core.connection import DEFAULT_POLICY, ConnectionPolicy
from ..core.errors import failures_explained
from ..core.events import EventSink
from ..core.gitlab import CreatedDeployToken, DeployTokenInfo, GitLabError
from ..core.namespaces import EVERY_NAMESPACE, Scope
from ..core.objects import encoded
from ..core.ports import GitLabConnector, KubePort, SecretObject
from ..core.reasons import ConditionType, EventReason, Reason
from ..core.refs import Logger
from ..core.renewal import Renewal, renewal
from ..core.times import iso, parse_time
from . import builders, copies
from .context import (
    DeployTokenContext,
    DeployTokenRef,
    check_secret_free,
    connect,
    explainer,
    parse_spec,
    resolve,
)
from .expiry import expiry_date
from .planner import CreateReason, Plan, Retiring, plan
from .status import DeployTokenStatus, retiring_status

# Out-of-band losses: a Warning Event and the TokenValid condition say what happened.
OUT_OF_BAND = {
    CreateReason.REVOKED: EventReason.TOKEN_REVOKED,
    CreateReason.EXPIRED: EventReason.TOKEN_EXPIRED,
    CreateReason.MISSING: EventReason.TOKEN_MISSING,
    CreateReason.SECRET_STALE: EventReason.SECRET_STALE,
}

# Why a token replaced the previous one, as the rotation metric's reason (the first token is no rotation).
ROTATION_REASONS = {
    CreateReason.RENEWAL: "expiring",
    CreateReason.SPEC_CHANGED: "requested",
    CreateReason.REVOKED: "refused",
    CreateReason.EXPIRED: "refused",
    CreateReason.MISSING: "refused",
    CreateReason.SECRET_STALE: "secret_lost",
}


@dataclass(frozen=True)
class DeployTokenOutcome:
    """What one reconcile leaves: the token in the Secret, when to look again, and whether it was reissued."""

    token_id: int
    username: str
    expires_at: datetime | None
    renewal_time: datetime | None
    next_check: datetime | None
    reissued: str | None  # why the token was replaced out of band (for TokenValid), None otherwise
    # renewBefore is not shorter than the lifetime GitLab gave the token: it renews at two thirds of it instead.
    renewal_fallback: bool
    ref: DeployTokenRef

    def ready_status(self, conditions: Sequence[Mapping[str, Any]], generation: int | None) -> dict[str, Any]:
        """The status of the reconciled DeployToken: its fields, TokenValid, and Ready=True."""
        reason, detail = (
            (Reason.REISSUED, self.reissued) if self.reissued else (Reason.ACCEPTED, "GitLab lists it as active")
        )
        updated = set_condition(conditions, ConditionType.TOKEN_VALID, "True", reason, detail, generation)
        expiry = f"expires {iso(self.expires_at)}" if self.expires_at else "never expires"
        message = f"Deploy token {self.token_id} ({self.username}) is in the Secret; it {expiry}"
        if self.renewal_fallback:
            message += (
                "; spec.renewBefore is not shorter than the lifetime GitLab gave the token, so it renews at two "
                "thirds of its life"
            )
        ready = set_condition(updated, ConditionType.READY, "True", Reason.RECONCILED, message, generation)
        return DeployTokenStatus.patch(
            token_id=self.token_id,
            username=self.username,
            expires_at=iso(self.expires_at),
            renewal_time=iso(self.renewal_time),
            renewal_fallback=self.renewal_fallback,
            observed_generation=generation,
            conditions=tuple(ready),
        )

    def observe(self) -> None:
        """The metrics of a reconciled DeployToken."""
        metrics.observe_deploy_token(
            self.ref.namespace, self.ref.name, expires_at=self.expires_at, renewal_at=self.renewal_time, ready="True"
        )


def open_context(
    kube: KubePort,
    pool: GitLabConnector,
    ref: DeployTokenRef,
    spec: Mapping[str, Any],
    emit: EventSink,
    log: Logger,
    scope: Scope = EVERY_NAMESPACE,
    policy: ConnectionPolicy = DEFAULT_POLICY,
) -> DeployTokenContext:
    """Parse the spec, refuse a Secret name someone else holds (here or where it is copied to), connect, read the
    status as stored now."""
    parsed = parse_spec(spec)
    with failures_explained(lambda _: None):
        parsed = resolve(kube, ref, parsed, policy)
    with failures_explained(explainer(parsed)):
        check_secret_free(kube, ref, parsed)
        copies.check(kube, scope, ref, parsed)
        gitlab = connect(kube, pool, ref, parsed)
        status = DeployTokenStatus.from_dict(kube.read_status(DEPLOY_TOKEN, ref.namespace, ref.name))
    return DeployTokenContext(ref=ref, spec=parsed, kube=kube, gitlab=gitlab, status=status, emit=emit, log=log)


def reconcile(ctx: DeployTokenContext) -> DeployTokenOutcome:
    with failures_explained(explainer(ctx.spec)):
        now = datetime.now(UTC)
        tokens = ctx.gitlab.list_deploy_tokens(ctx.spec.scope_path)
        secret = ctx.kube.read_secret(ctx.ref.namespace, ctx.spec.secret.name)
        held = _held_credentials(ctx, secret)
        annotations = secret.annotations if secret else {}
        state = ctx.status.planner_state(
            builders.secret_token_id(annotations) if held else None,
            annotations.get(builders.ANNOTATION_ISSUED_AT),
        )
        p = plan(
            renew_before=ctx.spec.renew_before,
            uid=ctx.ref.uid,
            name=ctx.ref.token_name,
            tokens=tokens,
            state=state,
            now=now,
            grace=ctx.spec.grace_period,
            scopes=ctx.spec.scopes,
            username=ctx.spec.username,
        )
        ours = {t.id: t for t in tokens if t.name == ctx.ref.token_name}
        if p.adopt is not None:
            _adopt(ctx, ours[p.adopt], state.secret_issued_at, p, held)
        _revoke(ctx, p)
        if p.create is None:
            current = ours[int(ctx.status.token_id or 0)]
            assert held is not None  # the planner creates when the Secret does not hold the current token
            if ctx.status.secret_checksum is None:  # written by a version that kept none: from now on it is known
                ctx.record(secret_checksum=builders.checksum(*held))
            _repair_secret(ctx, secret, current, held[1])
            if ctx.status.creation_started_at is not None:
                ctx.record(creation_started_at=None)  # an interrupted creation left nothing behind to act on
            return _outcome(ctx, current, p.next_check, None)
        replaced = ours.get(ctx.status.token_id or 0)
        reissued = _report_loss(ctx, p.create, replaced)
        created = create_token(ctx, p, replaced)
        return _outcome(ctx, created.info, _next_check(ctx, created.info), reissued)


def _held_credentials(ctx: DeployTokenContext, secret: SecretObject | None) -> tuple[str, str] | None:
    """(username, token) in our Secret; None without a readable one (deleted or emptied), or when the Secret says it
    holds the current token but holds another credential (a password or username edited by hand): its checksum,
    recorded when the operator wrote it, tells. The token itself is kept nowhere else."""
    if secret is None:
        return None
    held = builders.credentials(ctx.spec.secret, secret.data)
    current = builders.secret_token_id(secret.annotations) == ctx.status.token_id
    recorded = ctx.status.secret_checksum
    if held is not None and current and recorded is not None and builders.checksum(*held) != recorded:
        return None
    return held


def _adopt(
    ctx: DeployTokenContext, token: DeployTokenInfo, issued_at: datetime | None, p: Plan, held: tuple[str, str] | None
) -> None:
    """A crash between writing the Secret and the status: the Secret's token is the current one."""
    ctx.record(
        secret_checksum=builders.checksum(*held) if held else None,
        token_id=token.id,
        username=token.username,
        expires_at=iso(token.expires_at),
        issued_at=iso(issued_at),
        creation_started_at=None,
        retiring=retiring_status(p.retiring),
    )
    ctx.log.info("adopted deploy token %s, which the Secret holds (an interrupted renewal)", token.id)


def _revoke(ctx: DeployTokenContext, p: Plan) -> None:
    for r in p.revoke:
        gone = not ctx.gitlab.revoke_deploy_token(ctx.spec.scope_path, r.token_id)
        stray = r.why.startswith("a stray")
        if not gone:
            ctx.emit(
                "Warning" if stray else "Normal",
                EventReason.STRAY_TOKEN_REVOKED if stray else EventReason.TOKEN_REVOKED,
                f"Revoked deploy token {r.token_id} in GitLab: {r.why}",
            )
        ctx.log.info("revoked deploy token %s: %s", r.token_id, r.why)
    retiring = retiring_status(p.retiring)
    if p.revoke and ctx.status.retiring != retiring:
        ctx.record(retiring=retiring)


def _report_loss(ctx: DeployTokenContext, reason: CreateReason, replaced: DeployTokenInfo | None) -> str | None:
    """A Warning Event when the token was lost out of band; the reason, for the TokenValid condition."""
    event = OUT_OF_BAND.get(reason)
    if event is None:
        return None
    which = f"deploy token {replaced.id}" if replaced is not None else f"deploy token {ctx.status.token_id}"
    message = f"{which[0].upper()}{which[1:]}: {reason}; issuing a new one"
    ctx.emit("Warning", event, message)
    ctx.log.warning("%s", message)
    return f"{reason}; reissued"


def create_token(ctx: DeployTokenContext, p: Plan, replaced: DeployTokenInfo | None) -> CreatedDeployToken:
    """Create the next token inside the fence, write it to the Secret at once, then record it (and the token it
    replaces, kept until its grace period ends)."""
    assert p.create is not None
    now = datetime.now(UTC).replace(microsecond=0)  # as the status stores it, so every reader computes alike
    ctx.record(creation_started_at=iso(now))
    try:
        created = ctx.gitlab.create_deploy_token(
            ctx.spec.scope_path,
            name=ctx.ref.token_name,
            scopes=ctx.spec.scopes,
            expires_on=expiry_date(now, ctx.spec.valid_for),
            username=ctx.spec.username,
        )
    except GitLabError as exc:
        if exc.nothing_done:
            ctx.record(creation_started_at=None)  # refused: nothing was created
        # Otherwise (a lost reply, a 5xx, an answer without a usable token) the fence stays: the token it may have
        # made is a stray to revoke, found by its name, before the next is created and on deletion.
        raise
    info = created.info
    desired = builders.secret(
        ctx.spec.secret,
        owner_name=ctx.ref.name,
        owner_uid=ctx.ref.uid,
        namespace=ctx.ref.namespace,
        token_id=info.id,
        username=info.username,
        token=created.token,
        expires_at=info.expires_at,
        issued_at=now,
    )
    ctx.kube.apply_secret(desired)
    copies.sync(ctx, desired)  # before anything else: the copies never lag behind the Secret
    retiring = p.retiring
    keep_until = None
    if p.keep_current_until is not None and replaced is not None:
        # The grace period counts from now, when the Secret holds the successor.
        keep_until = datetime.now(UTC) + ctx.spec.grace_period
        retiring = (*retiring, Retiring(replaced.id, keep_until))
    ctx.record(
        token_id=info.id,
        username=info.username,
        expires_at=iso(info.expires_at),
        issued_at=iso(now),
        secret_checksum=builders.checksum(info.username, created.token),
        creation_started_at=None,
        retiring=retiring_status(retiring),
    )
    renewed = p.create in (CreateReason.RENEWAL, CreateReason.SPEC_CHANGED)
    verb = "Renewed" if renewed else "Created"
    message = f"{verb} deploy token {info.id} ({p.create}); Secret {ctx.spec.secret.name!r} holds it"
    if keep_until is not None and replaced is not None:
        message += f"; deploy token {replaced.id} stays valid until {iso(keep_until)}"
    ctx.emit("Normal", EventReason.TOKEN_RENEWED if renewed else EventReason.TOKEN_CREATED, message)
    ctx.log.info("%s", message)
    if (reason := ROTATION_REASONS.get(p.create)) is not None:
        metrics.DEPLOY_TOKEN.count_rotation(ctx.ref.namespace, ctx.ref.name, reason)
    return created


def _repair_secret(ctx: DeployTokenContext, secret: SecretObject | None, current: DeployTokenInfo, token: str) -> None:
    """Rewrite the Secret when its content no longer matches the spec (e.g. spec.secret.registry changed)."""
    desired = builders.secret(
        ctx.spec.secret,
        owner_name=ctx.ref.name,
        owner_uid=ctx.ref.uid,
        namespace=ctx.ref.namespace,
        token_id=current.id,
        username=current.username,
        token=token,
        expires_at=current.expires_at,
        issued_at=parse_time(ctx.status.issued_at),
    )
    copies.sync(ctx, desired)
    if secret is not None and encoded(dict(secret.data)) == desired["data"]:
        return
    ctx.kube.apply_secret(desired)
    ctx.emit("Normal", EventReason.SECRET_UPDATED, f"Rewrote Secret {ctx.spec.secret.name!r} to match spec.secret")


def _next_check(ctx: DeployTokenContext, token: DeployTokenInfo) -> datetime | None:
    """After a creation: the earliest of the new token's renewal and the end of any grace period."""
    times = [t for r in ctx.status.retiring if (t := parse_time(r["revokeAt"])) is not None]
    due = _renewal(ctx, token)
    return min([*times, due.at]) if due is not None else (min(times) if times else None)


def _renewal(ctx: DeployTokenContext, token: DeployTokenInfo) -> Renewal | None:
    """As the planner computes it: GitLab's expiry, the recorded creation time."""
    if token.expires_at is None:
        return None
    return renewal(token.expires_at, parse_time(ctx.status.issued_at), ctx.spec.renew_before, ctx.ref.uid)


def _outcome(
    ctx: DeployTokenContext, token: DeployTokenInfo, next_check: datetime | None, reissued: str | None
) -> DeployTokenOutcome:
    due = _renewal(ctx, token)
    return DeployTokenOutcome(
        token_id=token.id,
        username=token.username,
        expires_at=token.expires_at,
        renewal_time=due.at if due else None,
        renewal_fallback=bool(due and due.fallback),
        next_check=next_check,
        reissued=reissued,
        ref=ctx.ref,
    )
