"""The runner in GitLab: create it, adopt one an interrupted attempt created, keep its attributes in step, and
notice when it was deleted behind the operator's back.

The one call that is not idempotent, `POST /user/runners`, is fenced: `status.creationStartedAt` is written before
it and the runner id and token straight after it, and the runner carries an ownership marker, so a retry or a
restarted operator finds the runner it made instead of making a second one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..core.errors import ReconcileError
from ..core.gitlab import GitLabError, IssuedToken
from ..core.ports import GitLabPort, KubePort
from ..core.reasons import EventReason, Reason
from ..core.times import now_iso, parse_time
from . import batch, children, token
from .attributes import create_attributes, desired_attributes, drifted, is_owned_by
from .context import RunnerContext, RunnerRef
from .model import RunnerSpec
from .rotation import TokenState

# How far back from `creationStartedAt` a runner may have been created and still be ours (clock skew).
ORPHAN_WINDOW = timedelta(minutes=5)


@dataclass(frozen=True)
class EnsuredRunner:
    """The runner this Runner stands for, and its token. `fresh`: the token was issued during this call (just
    created, adopted or restored), so it needs neither a rotation nor a validity check."""

    runner_id: int
    token: TokenState
    fresh: bool
    # Just created or adopted: no pod ever held its token, so GitLab has no manager of it to list.
    unseen: bool = False


def ensure_runner(ctx: RunnerContext) -> EnsuredRunner:
    """The runner id and its token; creates, adopts or updates the runner as needed."""
    token_secret = token.own_token_secret(ctx.kube, ctx.ref, ctx.log)
    runner_id = ctx.status.runner_id or token.runner_id_of(token_secret)

    if runner_id is not None and not _exists_in_step(ctx, int(runner_id)):
        runner_id, token_secret = None, None
        record_runner(ctx, None)

    if runner_id is None:
        return create_or_adopt(ctx)
    if ctx.status.creation_started_at or ctx.status.runner_id is None:
        # A crash between storing the token (its Secret names the runner) and recording the id: finish the record,
        # so the creation fence does not linger.
        ctx.record(runner_id=int(runner_id), creation_started_at=None)
    if token.token_of(token_secret) is None:
        return EnsuredRunner(int(runner_id), token.restore(ctx, int(runner_id)), fresh=True)
    assert token_secret is not None
    return EnsuredRunner(int(runner_id), token.stored_state(token_secret), fresh=False)


def _exists_in_step(ctx: RunnerContext, runner_id: int) -> bool:
    """Does the runner still exist in GitLab? If so, repair any drift of its attributes from the spec."""
    actual = batch.read_runner(ctx, runner_id)
    if actual is None:
        ctx.emit(
            "Warning", EventReason.RUNNER_MISSING, f"Runner {runner_id} no longer exists in GitLab; creating a new one"
        )
        ctx.log.warning("runner %s is gone from GitLab; creating a new one", runner_id)
        return False
    changes = drifted(desired_attributes(ctx.spec, ctx.ref.uid), actual)
    if changes:
        batch.updated(ctx, ctx.gitlab.update_runner(actual.id, changes))
        fields = ", ".join(sorted(changes))
        ctx.emit("Normal", EventReason.RUNNER_UPDATED, f"Updated {fields} of runner {actual.id} in GitLab")
        ctx.log.info("updated %s of runner %s in GitLab", fields, actual.id)
    return True


def create_or_adopt(ctx: RunnerContext) -> EnsuredRunner:
    check_names_free(ctx.kube, ctx.ref, own_account=not ctx.spec.manager.service_account_name)
    children.check_children(ctx)
    started = parse_time(ctx.status.creation_started_at)
    if started is not None:
        orphan = find_orphan_or_warn(ctx, started, then="creating a new runner")
        if orphan is not None:
            # Created by an earlier attempt whose reply was lost: its token was never seen, so reset it.
            issued = ctx.gitlab.reset_token(orphan)
            adopted = _recorded(
                ctx,
                orphan,
                issued,
                EventReason.RUNNER_ADOPTED,
                f"Adopted runner {orphan}, created by an interrupted attempt",
            )
            # It was created from the spec of that attempt; the spec may have been edited since (while the operator
            # was down): bring its attributes in step before this generation can be Ready.
            if not _exists_in_step(ctx, orphan):
                raise ReconcileError(
                    Reason.RUNNER_MISSING, f"Runner {orphan} vanished from GitLab right after adoption"
                )
            return adopted
    else:
        ctx.record(creation_started_at=now_iso())

    try:
        created = ctx.gitlab.create_runner(create_attributes(ctx.spec, ctx.ref.uid))
    except GitLabError as exc:
        if exc.nothing_done:
            # Refused outright (a 4xx) or never sent: nothing was created, so there is nothing to search for later,
            # on a retry or on deletion.
            ctx.record(creation_started_at=None)
        else:
            # A lost reply, a 5xx, or an answer that is not GitLab's success (a proxy's page, a token that is not
            # one): the runner may exist. The fence stays, so the next attempt adopts it by its ownership marker
            # and resets its token instead of creating a second one.
            ctx.log.warning(
                "the outcome of creating the runner is unknown (%s); the next attempt looks for it", exc.reason
            )
        raise
    message = f"Created {ctx.spec.runner_type} runner {created.id} in GitLab"
    return _recorded(ctx, created.id, created.token, EventReason.RUNNER_CREATED, message)


def _recorded(
    ctx: RunnerContext, runner_id: int, issued: IssuedToken, reason: EventReason, message: str
) -> EnsuredRunner:
    # Persist before anything else can fail: the token exists nowhere else. Its Secret names the runner, so the
    # record may wait for the next status write (`ensure_runner` finishes it after a crash): one write less.
    token.store(ctx, runner_id, issued)
    record_runner(ctx, runner_id, deferred=True)
    ctx.emit("Normal", reason, message)
    ctx.log.info("%s", message)
    return EnsuredRunner(runner_id, token.issued_state(issued), fresh=True, unseen=True)


def record_runner(ctx: RunnerContext, runner_id: int | None, *, deferred: bool = False) -> None:
    """Record the runner just created or adopted (its token already stored), or None for one gone from GitLab.
    Both fences go: a creation is done or moot, and a rotation fence of an earlier runner must not reset the token
    of the one that replaces it."""
    (ctx.defer if deferred else ctx.record)(runner_id=runner_id, creation_started_at=None, rotation_started_at=None)


def check_names_free(kube: KubePort, ref: RunnerRef, *, own_account: bool = True) -> None:
    """Before anything is created in GitLab: the objects this Runner will own must not exist, or be ours (applying
    ours over a user's object would adopt it, and garbage-collect it with the Runner). One still owned by an
    earlier Runner of the same name is about to be garbage-collected: wait for it. `own_account`: the operator
    makes the manager pods' ServiceAccount (no spec.manager.serviceAccountName)."""
    names = ref.children
    secret_owners: dict[str, Sequence[str] | None] = {
        f"Secret {name!r}": (secret.owners if (secret := kube.read_secret(ref.namespace, name)) else None)
        for name in (names.token_secret, names.config_secret)
    }
    children: list[tuple[str, str]] = [("PodDisruptionBudget", names.disruption_budget)]
    if own_account:
        children.append(("ServiceAccount", names.service_account))
    existing = {
        **secret_owners,
        f"StatefulSet {names.statefulset!r}": kube.statefulset_owners(ref.namespace, names.statefulset),
        **{
            f"{kind} {name!r}": (child.owners if (child := kube.read_child(kind, ref.namespace, name)) else None)
            for kind, name in children
        },
    }
    for what, owners in existing.items():
        check_owned(what, owners, ref)


def check_owned(what: str, owners: Sequence[str] | None, ref: RunnerRef) -> None:
    """`what` (with these owner uids, None when it does not exist) may be made or applied by this Runner."""
    if owners is None or ref.uid in owners:
        return
    if owners:
        raise ReconcileError(
            Reason.WAITING_FOR_CLEANUP, f"{what} still belongs to an earlier object; waiting for its removal"
        )
    raise ReconcileError(
        Reason.NAME_CONFLICT,
        f"{what} already exists in namespace {ref.namespace!r} and is not managed by this Runner: "
        "delete or rename it (the operator names its objects after the Runner).",
    )


def find_orphan_or_warn(ctx: RunnerContext, since: datetime, then: str) -> int | None:
    """`find_orphan`, or None with a warning saying what happens `then` when the token may not list runners."""
    try:
        return find_orphan(ctx.gitlab, ctx.ref, ctx.spec, since)
    except GitLabError as exc:
        if exc.status != 403:
            raise
    # Listing runners needs read_api (or api); create_runner + manage_runner alone cannot search.
    message = (
        "An earlier creation attempt was interrupted and the access token cannot list runners (it needs the "
        f"read_api or api scope) to find what it may have created; {then}. Check GitLab for a "
        f"runner whose maintenance note names Runner uid {ctx.ref.uid}."
    )
    ctx.emit("Warning", EventReason.ORPHAN_SEARCH_FORBIDDEN, message)
    ctx.log.warning("%s", message)
    return None


def find_orphan(gl: GitLabPort, ref: RunnerRef, spec: RunnerSpec, since: datetime) -> int | None:
    """A runner carrying this Runner's ownership marker, created since the recorded creation attempt."""
    if spec.runner_type == "project_type":
        path = f"/projects/{spec.project_id}/runners"
    elif spec.runner_type == "group_type":
        path = f"/groups/{spec.group_id}/runners"
    else:
        path = "/runners/all"
    for item in gl.list_runners(path, type=spec.runner_type):
        created = parse_time(item.created_at)
        if created is None or created < since - ORPHAN_WINDOW:
            continue
        details = gl.get_runner(item.id)
        if details is not None and is_owned_by(details.maintenance_note, ref.uid):
            return item.id
    return None
