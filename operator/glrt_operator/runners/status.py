"""The typed status of a `Runner`, and the one way to turn changes of it into a status patch.

Field names are the snake_case of the CRD's status properties (a test checks that the CRD declares every one:
the apiserver would silently prune an undeclared field).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NotRequired, TypedDict

from ..core.conditions import Condition
from ..core.status import TypedStatus


class ReplicaStatus(TypedDict):
    """One `status.replicas[]` entry: a replica and what GitLab knows of its runner manager. Keys without a value
    are left out (a `null` in a status patch makes Kopf report the patch as inconsistent)."""

    ordinal: int
    pod: str
    systemId: str
    managerStatus: str
    contactedAt: NotRequired[str]
    version: NotRequired[str]
    # The pod is stopping and waits for its running jobs.
    draining: NotRequired[bool]


class ExecutorStatus(TypedDict, total=False):
    """`status.executor`: where job pods run, as which ServiceAccount, and the RoleBindings the operator made for it
    (`namespace/name`: in another namespace no owner reference can reach, so the deletion removes what is listed)."""

    namespace: str
    serviceAccount: str
    roleBindings: list[str]
    # The spec generation whose own ServiceAccount (spec.manager.serviceAccountName) the API server approved.
    verifiedGeneration: int


@dataclass(frozen=True)
class RunnerStatus(TypedStatus):
    LIST_FIELDS = frozenset({"replicas", "conditions"})

    observed_generation: int | None = None
    # The last generation the event handlers reconciled (until then the periodic resyncs leave it to them).
    reconciled_generation: int | None = None
    runner_id: int | None = None
    # Fence of `POST /user/runners`: set just before it, cleared once the runner is recorded.
    creation_started_at: str | None = None
    # Fence of a token reset: set just before it, cleared once the new token is stored.
    rotation_started_at: str | None = None
    # The spec.tokenRotation.requestedAt last acted on.
    rotation_requested_at: str | None = None
    token_rotated_at: str | None = None
    token_secret_name: str | None = None
    config_secret_name: str | None = None
    token_expires_at: str | None = None
    # When the operator next rotates the token by itself (renewBefore ahead of its expiry, jittered).
    renewal_time: str | None = None
    ready_replicas: int | None = None
    # How the last reconcile read the runner in GitLab: GraphQL (a batch read per owner) or REST (one by one).
    gitlab_reads: str | None = None
    executor: ExecutorStatus | None = None
    # Set once a deletion has removed the runner from GitLab (a deletion still waiting for its pods retries).
    unregistered_at: str | None = None
    replicas: tuple[ReplicaStatus, ...] = ()
    conditions: tuple[Condition, ...] = ()
