"""Deleting a `Runner`: unregister its runner in GitLab (404 counts as done). Its children go by garbage
collection (owner references), so nothing else is deleted here.

Deletion always finishes when nothing exists in GitLab: with no runner id and no creation fence there is nothing to
do; with only a fence (an interrupted creation) one search is made, and a search that cannot succeed (the access
token is missing or refused, GitLab refuses the project or group, what answers is not GitLab) ends the deletion
with a Warning instead of waiting for ever. A failure that may pass (5xx, 429, network) is retried, the search
only until the caller says to give up (`give_up_search`); a runner whose id is known is retried until deleted.
When the access token is missing or GitLab refuses it the deletion (401, 403: e.g. create_runner without
manage_runner), the runner deletes itself with its own token, and a Warning says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..core.api import RUNNER
from ..core.connection import DEFAULT_POLICY, ConnectionPolicy, connect_without_token
from ..core.errors import ReconcileError, classify, failures_explained
from ..core.events import EventSink
from ..core.gitlab import GitLabError
from ..core.ports import GitLabConnector, GitLabPort, KubePort, SecretObject
from ..core.reasons import EventReason
from ..core.refs import Logger
from ..core.times import iso, now_iso, parse_time
from . import access, token
from .context import RunnerContext, RunnerRef, connect, explainer, parse_spec, resolve
from .model import RunnerSpec
from .registration import find_orphan_or_warn
from .status import RunnerStatus

# GitLab refuses the access token itself (401: unknown, expired, revoked) or what it may do (403: a scope or role).
REFUSED_ACCESS_TOKEN = (401, 403)


@dataclass(frozen=True)
class _Deletion:
    kube: KubePort
    pool: GitLabConnector
    ref: RunnerRef
    spec: RunnerSpec
    status: RunnerStatus
    token_secret: SecretObject | None
    emit: EventSink
    log: Logger


def delete_runner(
    kube: KubePort,
    pool: GitLabConnector,
    ref: RunnerRef,
    spec: Mapping[str, Any],
    emit: EventSink,
    log: Logger,
    *,
    give_up_search: bool = False,
    policy: ConnectionPolicy = DEFAULT_POLICY,
) -> None:
    try:
        status = RunnerStatus.from_dict(kube.read_status(RUNNER, ref.namespace, ref.name))
        token_secret = token.own_token_secret(kube, ref, log)
    except Exception as exc:  # classified like every failure
        raise classify(exc) from None
    runner_id = status.runner_id or token.runner_id_of(token_secret)
    started = parse_time(status.creation_started_at)
    if (runner_id is not None or started is not None) and not status.unregistered_at:
        d = _Deletion(kube, pool, ref, _resolved(kube, ref, parse_spec(spec), policy), status, token_secret, emit, log)
        _unregister(d, runner_id, started, give_up_search)
        # Done in GitLab: a retry (while the pods drain, below) need not ask again.
        try:
            kube.patch_status(RUNNER, ref.namespace, ref.name, RunnerStatus.patch(unregistered_at=now_iso()))
        except Exception as exc:
            raise classify(exc) from None
    try:
        access.release_on_delete(kube, ref, status, emit, log)
    except ReconcileError:
        raise
    except Exception as exc:
        raise classify(exc) from None


def _resolved(kube: KubePort, ref: RunnerRef, spec: RunnerSpec, policy: ConnectionPolicy) -> RunnerSpec:
    """spec.gitlab resolved when its connection can be read; else as written (`connect` then says why)."""
    try:
        return resolve(kube, ref, spec, policy)
    except Exception:  # reported by `connect` below, where a deletion decides what to do without GitLab
        return spec


def _unregister(d: _Deletion, runner_id: int | None, started: datetime | None, give_up_search: bool) -> None:
    """Delete the runner in GitLab, or what an interrupted creation may have made (searched by its marker)."""
    kube, pool, ref, parsed = d.kube, d.pool, d.ref, d.spec
    with failures_explained(explainer(parsed)):
        try:
            gitlab = connect(kube, pool, ref, parsed)
        except (ReconcileError, GitLabError) as exc:
            if runner_id is None:
                assert started is not None
                _give_up_search(d, started, classify(exc).message)
            else:
                _delete_with_runner_token(d, runner_id, exc)
            return
        if runner_id is None:
            assert started is not None
            runner_id = _search(d, gitlab, started, give_up_search)
            if runner_id is None:
                return  # the interrupted creation created nothing, or it cannot be searched for
        _delete(d, gitlab, int(runner_id))


def _delete(d: _Deletion, gitlab: GitLabPort, runner_id: int) -> None:
    """With the access token; with the runner's own token when GitLab refuses the access token that."""
    try:
        deleted = gitlab.delete_runner(runner_id)
    except GitLabError as exc:
        if exc.status not in REFUSED_ACCESS_TOKEN or not token.token_of(d.token_secret):
            raise
        why = "unknown, expired or revoked" if exc.status == 401 else "it needs manage_runner or api, and the role"
        message = (
            f"GitLab refused the access token to delete runner {runner_id} ({exc.reason}: {why}); deleting the "
            "runner with its own token instead"
        )
        d.emit("Warning", EventReason.RUNNER_DELETE_FORBIDDEN, message)
        d.log.warning("%s", message)
        _delete_with_runner_token(d, runner_id, exc)
        return
    if deleted:
        d.emit("Normal", EventReason.RUNNER_DELETED, f"Deleted runner {runner_id} in GitLab")
        d.log.info("deleted runner %s in GitLab", runner_id)
    else:
        d.log.info("runner %s was already gone from GitLab", runner_id)


def _delete_with_runner_token(d: _Deletion, runner_id: int, why: Exception) -> None:
    """The access token is gone (often: the namespace is being deleted) or may not delete the runner (a token with
    create_runner but not manage_runner, or one revoked since) but the runner token is at hand: the runner deletes
    itself (`DELETE /runners`). It goes to the same GitLab, so it is verified with the same CA."""
    runner_token = token.token_of(d.token_secret)
    if not runner_token or d.spec.gitlab.connection is not None:  # no token, or the connection (its URL) is gone
        raise why
    by_token = connect_without_token(d.kube, d.pool, d.ref.namespace, d.spec.gitlab)
    if by_token.delete_runner_by_token(runner_token):
        d.emit("Normal", EventReason.RUNNER_DELETED, f"Deleted runner {runner_id} in GitLab with its own token")
        d.log.info("deleted runner %s in GitLab with its own token", runner_id)
    else:
        d.log.info("GitLab does not know the token of runner %s: the runner is gone already", runner_id)


def _search(d: _Deletion, gitlab: GitLabPort, started: datetime, give_up: bool) -> int | None:
    """What an interrupted creation may have made; None when it made nothing or cannot be searched for."""
    ctx = RunnerContext(ref=d.ref, spec=d.spec, kube=d.kube, gitlab=gitlab, status=d.status, emit=d.emit, log=d.log)
    try:
        return find_orphan_or_warn(ctx, started, then="it stays in GitLab if it exists")
    except GitLabError as exc:
        if exc.retryable and not give_up:
            raise  # may pass (5xx, 429, network): retried with back-off
        _give_up_search(d, started, str(exc))
        return None


def _give_up_search(d: _Deletion, started: datetime, why: str) -> None:
    message = (
        f"A creation attempt at {iso(started)} was interrupted and what it may have created cannot be "
        f"searched for ({why}); deleting the Runner anyway. Check GitLab for a runner whose maintenance note names "
        f"Runner uid {d.ref.uid}."
    )
    d.emit("Warning", EventReason.ORPHAN_SEARCH_IMPOSSIBLE, message)
    d.log.warning("%s", message)
