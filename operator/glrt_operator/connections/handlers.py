"""The Kopf registrations of GitLabConnection and ClusterGitLabConnection: each names the use case and hands it to
the controller runtime, which owns the policy (priorities, retries, conditions, Events). The renewal of the access
token is a resync that wakes at its renewal time."""

from __future__ import annotations

from typing import Any

import kopf

from .. import metrics
from ..controller import runtime
from ..controller.runtime import Call
from ..core.api import CLUSTER_GITLAB_CONNECTION, GITLAB_CONNECTION, GROUP, VERSION
from ..core.times import parse_time
from .reconcile import ConnectionOutcome, ConnectionRef, reconcile

CONNECTIONS = runtime.Resource(GITLAB_CONNECTION, "connection", metrics.CONNECTION)
CLUSTER_CONNECTIONS = runtime.Resource(CLUSTER_GITLAB_CONNECTION, "connection", metrics.CONNECTION)
NAMESPACED, CLUSTER = GITLAB_CONNECTION.plural, CLUSTER_GITLAB_CONNECTION.plural


def reconcile_connection(call: Call) -> ConnectionOutcome:
    """Read GitLab's version and the token, renew the token when due (`connections.reconcile`)."""
    meta = call.body["metadata"]
    namespace = meta.get("namespace")
    kind = GITLAB_CONNECTION if namespace else CLUSTER_GITLAB_CONNECTION
    ref = ConnectionRef(kind, namespace, meta["name"])
    return reconcile(call.kube, call.gitlab, ref, call.spec, call.emit, call.log, runtime.CONFIG.connections)


def _first_check(kwargs: Any) -> Any:
    return parse_time((kwargs.get("status") or {}).get("renewalTime"))


@kopf.on.create(GROUP, VERSION, NAMESPACED)
@kopf.on.update(GROUP, VERSION, NAMESPACED, field="spec")
def on_connection_changed(**kwargs: Any) -> None:
    runtime.on_event(CONNECTIONS, reconcile_connection, kwargs)


@kopf.on.resume(GROUP, VERSION, NAMESPACED)
async def on_connection_resumed(**kwargs: Any) -> None:
    await runtime.on_resume(CONNECTIONS, reconcile_connection, kwargs)


@kopf.daemon(GROUP, VERSION, NAMESPACED, cancellation_timeout=30)
async def renew_connection_token(**kwargs: Any) -> None:
    await runtime.renewal_daemon(CONNECTIONS, reconcile_connection, _first_check(kwargs), kwargs)


@kopf.on.create(GROUP, VERSION, CLUSTER)
@kopf.on.update(GROUP, VERSION, CLUSTER, field="spec")
def on_cluster_connection_changed(**kwargs: Any) -> None:
    runtime.on_event(CLUSTER_CONNECTIONS, reconcile_connection, kwargs)


@kopf.on.resume(GROUP, VERSION, CLUSTER)
async def on_cluster_connection_resumed(**kwargs: Any) -> None:
    await runtime.on_resume(CLUSTER_CONNECTIONS, reconcile_connection, kwargs)


@kopf.daemon(GROUP, VERSION, CLUSTER, cancellation_timeout=30)
async def renew_cluster_connection_token(**kwargs: Any) -> None:
    await runtime.renewal_daemon(CLUSTER_CONNECTIONS, reconcile_connection, _first_check(kwargs), kwargs)
