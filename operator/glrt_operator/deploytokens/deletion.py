"""Deleting a `DeployToken`: revoke every active token of this object in GitLab (current, retiring, strays); gone
counts as done. The Secret goes by garbage collection."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..core.api import DEPLOY_TOKEN
from ..core.connection import DEFAULT_POLICY, ConnectionPolicy
from ..core.errors import ReconcileError, failures_explained
from ..core.events import EventSink
from ..core.ports import GitLabConnector, KubePort
from ..core.reasons import EventReason
from ..core.refs import Logger
from . import copies
from .context import DeployTokenRef, connect, explainer, parse_spec
from .planner import to_revoke_on_delete
from .status import DeployTokenStatus


def delete_deploy_token(
    kube: KubePort,
    pool: GitLabConnector,
    ref: DeployTokenRef,
    spec: Mapping[str, Any],
    emit: EventSink,
    log: Logger,
    *,
    give_up: bool = False,
    policy: ConnectionPolicy = DEFAULT_POLICY,
) -> None:
    """`give_up`: when the access token is missing (often: the namespace is being deleted), warn and let the object
    go rather than hold it forever; the tokens still expire on their own."""
    status = DeployTokenStatus.from_dict(kube.read_status(DEPLOY_TOKEN, ref.namespace, ref.name))
    if status.copies:
        secret_name = parse_spec(spec).secret.name
        with failures_explained(lambda _: None):
            copies.remove(kube, ref, secret_name, status.copies, emit)
    if status.token_id is None and status.creation_started_at is None and not status.retiring:
        return  # never got as far as GitLab
    parsed = parse_spec(spec)
    with failures_explained(explainer(parsed)):
        try:
            gitlab = connect(kube, pool, ref, parsed, policy)
        except ReconcileError as exc:
            if not give_up:
                raise
            message = f"Could not revoke deploy token {status.token_id} in GitLab: {exc.message} Revoke it there."
            emit("Warning", EventReason.REVOKE_SKIPPED, message)
            log.warning("%s", message)
            return
        tokens = gitlab.list_deploy_tokens(parsed.scope_path)
        for token_id in to_revoke_on_delete(ref.token_name, tokens, datetime.now(UTC)):
            if gitlab.revoke_deploy_token(parsed.scope_path, token_id):
                emit("Normal", EventReason.TOKEN_REVOKED, f"Revoked deploy token {token_id} in GitLab")
                log.info("revoked deploy token %s in GitLab", token_id)
