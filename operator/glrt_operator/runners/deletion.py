"""Deleting a `Runner`: unregister its runner in GitLab (404 counts as done). Its children go by garbage
collection (owner references), so nothing else is deleted here.

Deletion always finishes when nothing exists in GitLab: with no runner id and no creation fence there is nothing to
do; with only a fence (an interrupted creation) one search is made, and a search that cannot succeed (the access
token is missing or refused, GitLab refuses the project or group, what answers is not GitLab) ends the deletion
with a Warning instead of waiting for ever. A failure that may pass (5xx, 429, network) is retried, the search
only until the caller says to give up (`give_up_search`); a runner whose id is known is retried until deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..adapters.gitlab import GitLabError, GitLabPool, parse_time
from ..adapters.kube import Kube
from ..core.errors import ReconcileError, classify
from ..core.events import EventSink
from ..core.refs import Logger
from . import token
from .context import RunnerContext, RunnerRef, connect, failures_explained, parse_spec, read_ca
from .registration import find_orphan_or_warn
from .status import RunnerStatus


def delete_runner(
    kube: Kube,
    pool: GitLabPool,
    ref: RunnerRef,
    spec: Mapping[str, Any],
    emit: EventSink,
    log: Logger,
    *,
    give_up_search: bool = False,
) -> None:
    try:
        status = RunnerStatus.from_dict(kube.read_runner_status(ref.namespace, ref.name))
        token_secret = token.own_token_secret(kube, ref, log)
    except Exception as exc:  # classified like every failure
        raise classify(exc) from None
    runner_id = status.runner_id or token.runner_id_of(token_secret)
    started = parse_time(status.creation_started_at)
    if runner_id is None and started is None:
        return  # never got as far as GitLab (a spec it could not act on included)
    parsed = parse_spec(spec)
    with failures_explained(parsed):
        try:
            gitlab = connect(kube, pool, ref, parsed)
        except (ReconcileError, GitLabError) as exc:
            runner_token = token.token_of(token_secret)
            if runner_id is None:
                assert started is not None
                _give_up_search(ref, started, classify(exc).message, emit, log)
                return
            if not runner_token:
                raise
            # The access token is gone (often: the namespace is being deleted) but the runner token is at hand.
            # It goes to the same GitLab, so it is verified with the same CA.
            by_token = pool.client(parsed.gitlab.api_url, "", read_ca(kube, ref.namespace, parsed.gitlab))
            if by_token.delete_runner_by_token(runner_token):
                emit("Normal", "RunnerDeleted", f"Deleted runner {runner_id} in GitLab with its own token")
                log.info("deleted runner %s in GitLab with its own token", runner_id)
            return
        if runner_id is None:
            assert started is not None
            ctx = RunnerContext(ref=ref, spec=parsed, kube=kube, gitlab=gitlab, status=status, emit=emit, log=log)
            try:
                runner_id = find_orphan_or_warn(ctx, started, then="it stays in GitLab if it exists")
            except GitLabError as exc:
                if exc.retryable and not give_up_search:
                    raise  # may pass (5xx, 429, network): retried with back-off
                _give_up_search(ref, started, str(exc), emit, log)
                return
            if runner_id is None:
                return  # the interrupted creation created nothing
        if gitlab.delete_runner(int(runner_id)):
            emit("Normal", "RunnerDeleted", f"Deleted runner {runner_id} in GitLab")
            log.info("deleted runner %s in GitLab", runner_id)
        else:
            log.info("runner %s was already gone from GitLab", runner_id)


def _give_up_search(ref: RunnerRef, started: datetime, why: str, emit: EventSink, log: Logger) -> None:
    message = (
        f"A creation attempt at {started:%Y-%m-%dT%H:%M:%SZ} was interrupted and what it may have created cannot be "
        f"searched for ({why}); deleting the Runner anyway. Check GitLab for a runner whose maintenance note names "
        f"Runner uid {ref.uid}."
    )
    emit("Warning", "OrphanSearchImpossible", message)
    log.warning("%s", message)
