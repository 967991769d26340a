"""The runner's `glrt-` token: where it is stored, restoring it when its Secret is lost, rotating it (on request,
before expiry, after GitLab refused it).

Every reset is fenced: `status.rotationStartedAt` is written before `POST /runners/:id/reset_authentication_token`
and cleared once the new token is stored, so an operator that dies in between resets again on the next call
instead of keeping a token GitLab has revoked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from .. import metrics
from ..core.gitlab import IssuedToken, RunnerManager
from ..core.ports import KubePort, SecretObject
from ..core.reasons import EventReason, Reason
from ..core.refs import Logger
from ..core.times import iso, now_iso, parse_time
from . import builders
from .context import RunnerContext, RunnerRef
from .rotation import TokenState, rotation_cause

# A manager that contacted GitLab this recently proves the token works: no need to ask GitLab about it.
HEALTHY_CONTACT = timedelta(minutes=10)
TOKEN_REFUSED = "GitLab refuses the runner token (revoked or expired outside the operator); issuing a new one."


@dataclass(frozen=True)
class TokenCondition:
    """The TokenValid condition to write."""

    status: Literal["True", "False"]
    reason: Reason
    message: str


ACCEPTED = TokenCondition("True", Reason.ACCEPTED, "GitLab accepts the runner token")


def own_token_secret(kube: KubePort, ref: RunnerRef, log: Logger) -> SecretObject | None:
    """The token Secret, unless it still belongs to an earlier Runner of the same name (awaiting garbage
    collection): its runner is not ours to adopt."""
    secret = kube.read_secret(ref.namespace, ref.children.token_secret)
    if secret is not None and ref.uid not in secret.owners:
        log.info("ignoring token Secret left by an earlier Runner of the same name")
        return None
    return secret


def runner_id_of(token_secret: SecretObject | None) -> int | None:
    """The runner id recorded on the token Secret (the status may have lost it)."""
    raw = token_secret.annotations.get(builders.ANNOTATION_RUNNER_ID) if token_secret else None
    return int(raw) if raw and str(raw).isdigit() else None


def token_of(token_secret: SecretObject | None) -> str | None:
    return token_secret.value(builders.TOKEN_KEY) if token_secret else None


def stored_state(token_secret: SecretObject) -> TokenState:
    annotations = token_secret.annotations
    return TokenState(
        token=token_secret.data[builders.TOKEN_KEY],
        expires_at=parse_time(annotations.get(builders.ANNOTATION_TOKEN_EXPIRES_AT)),
        obtained_at=parse_time(annotations.get(builders.ANNOTATION_TOKEN_OBTAINED_AT)),
    )


def issued_state(issued: IssuedToken) -> TokenState:
    return TokenState(token=issued.token, expires_at=issued.expires_at, obtained_at=datetime.now(UTC))


def store(ctx: RunnerContext, runner_id: int, issued: IssuedToken) -> None:
    """Write the token Secret. Called straight after GitLab issued the token: it exists nowhere else."""
    ref = ctx.ref
    ctx.kube.apply_secret(
        builders.build_token_secret(
            name=ref.children.token_secret,
            namespace=ref.namespace,
            owner=ref.owner(),
            runner_name=ref.name,
            runner_id=runner_id,
            token=issued.token,
            token_expires_at=iso(issued.expires_at),
            token_obtained_at=now_iso(),
        )
    )


def restore(ctx: RunnerContext, runner_id: int) -> TokenState:
    """The runner exists but its token was lost (Secret deleted by hand): the only way back is a reset."""
    issued = ctx.gitlab.reset_token(runner_id)
    store(ctx, runner_id, issued)
    metrics.RUNNER.count_rotation(ctx.ref.namespace, ctx.ref.name, "secret_lost")
    ctx.emit(
        "Warning", EventReason.TOKEN_RESTORED, f"The token Secret was missing; reset the token of runner {runner_id}"
    )
    return issued_state(issued)


def rotate(ctx: RunnerContext, runner_id: int, reason: str, kind: str) -> TokenState:
    """Reset the token and store the new one, inside the rotation fence. `kind`: one of metrics.ROTATION_REASONS."""
    ctx.record(rotation_started_at=now_iso())
    issued = ctx.gitlab.reset_token(runner_id)
    store(ctx, runner_id, issued)
    ctx.record(
        rotation_started_at=None,
        token_rotated_at=now_iso(),
        rotation_requested_at=ctx.spec.token_rotation.requested_at,
    )
    metrics.RUNNER.count_rotation(ctx.ref.namespace, ctx.ref.name, kind)
    ctx.emit("Normal", EventReason.TOKEN_ROTATED, f"Rotated the token of runner {runner_id}: {reason}")
    ctx.log.info("rotated the token of runner %s: %s", runner_id, reason)
    return issued_state(issued)


def rotate_if_due(ctx: RunnerContext, runner_id: int, token: TokenState) -> TokenState:
    """Rotate when asked to (spec.tokenRotation.requestedAt), when the token nears its expiry, or when a
    rotation was interrupted."""
    cause = rotation_cause(ctx.spec.token_rotation, ctx.status, token, datetime.now(UTC), ctx.ref.uid)
    return token if cause is None else rotate(ctx, runner_id, cause.text, cause.kind)


@dataclass(frozen=True)
class CheckedToken:
    token: TokenState
    condition: TokenCondition


def ensure_accepted(
    ctx: RunnerContext, runner_id: int, token: TokenState, managers: list[RunnerManager]
) -> CheckedToken:
    """Reissue the token when GitLab refuses it. A manager that contacted GitLab lately proves it works without
    asking; otherwise one side-effect-free check is made."""
    if recently_contacted(managers) or ctx.gitlab.token_is_valid(token.token):
        return CheckedToken(token, ACCEPTED)
    ctx.emit("Warning", EventReason.TOKEN_REFUSED, TOKEN_REFUSED)
    ctx.log.warning("%s", TOKEN_REFUSED)
    token = rotate(ctx, runner_id, "GitLab refused the token", "refused")
    return CheckedToken(token, TokenCondition("True", Reason.REISSUED, f"{TOKEN_REFUSED} Reissued at {now_iso()}."))


def recently_contacted(managers: list[RunnerManager]) -> bool:
    horizon = datetime.now(UTC) - HEALTHY_CONTACT
    return any((t := parse_time(m.contacted_at)) is not None and t > horizon for m in managers)
