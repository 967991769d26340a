"""Deleting a `Runner`: unregister its runner in GitLab (404 counts as done). Its children go by garbage
collection (owner references), so nothing else is deleted here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..adapters.gitlab import GitLabPool, parse_time
from ..adapters.kube import Kube
from ..core.errors import ReconcileError
from ..core.events import EventSink
from . import token
from .context import Logger, RunnerContext, RunnerRef, connect, failures_explained, parse_spec, read_ca
from .registration import find_orphan_or_warn
from .status import RunnerStatus


def delete_runner(
    kube: Kube, pool: GitLabPool, ref: RunnerRef, spec: Mapping[str, Any], emit: EventSink, log: Logger
) -> None:
    parsed = parse_spec(spec)
    with failures_explained(parsed):
        status = RunnerStatus.from_dict(kube.read_runner_status(ref.namespace, ref.name))
        token_secret = token.own_token_secret(kube, ref, log)
        runner_id = status.runner_id or token.runner_id_of(token_secret)
        started = parse_time(status.creation_started_at)
        if runner_id is None and started is None:
            return  # never got as far as GitLab
        try:
            gitlab = connect(kube, pool, ref, parsed)
        except ReconcileError:
            runner_token = token.token_of(token_secret)
            if runner_id is None or not runner_token:
                raise
            # The access token is gone (often: the namespace is being deleted) but the runner token is at hand.
            # It goes to the same GitLab, so it is verified with the same CA.
            by_token = pool.client(parsed.gitlab.api_url, "", read_ca(kube, ref, parsed))
            if by_token.delete_runner_by_token(runner_token):
                emit("Normal", "RunnerDeleted", f"Deleted runner {runner_id} in GitLab with its own token")
                log.info("deleted runner %s in GitLab with its own token", runner_id)
            return
        ctx = RunnerContext(ref=ref, spec=parsed, kube=kube, gitlab=gitlab, status=status, emit=emit, log=log)
        if runner_id is None and started is not None:
            runner_id = find_orphan_or_warn(ctx, started, then="it stays in GitLab if it exists")
        if runner_id is None:
            return
        if gitlab.delete_runner(int(runner_id)):
            emit("Normal", "RunnerDeleted", f"Deleted runner {runner_id} in GitLab")
            log.info("deleted runner %s in GitLab", runner_id)
        else:
            log.info("runner %s was already gone from GitLab", runner_id)
