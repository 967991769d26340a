"""Bringing GitLab and the cluster in step with one `Runner`: the orchestration of the use cases.

Level-based and idempotent: every call reads what exists and does only what is missing. The steps, each in its
own module: the runner in GitLab (`registration`), its token (`token`), its runner managers (`managers`), the
objects in the cluster (`children`). Deletion is in `deletion`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..adapters.gitlab import GitLabPool
from ..adapters.kube import Kube
from ..core.conditions import iso
from ..core.events import EventSink
from ..core.refs import Logger
from . import managers, registration, token
from .children import apply_children
from .context import RunnerContext, RunnerRef, check_name, connect, failures_explained, parse_spec
from .credentials import config_credentials
from .replicas import replica_statuses
from .rotation import renewal_due_at
from .status import ReplicaStatus, RunnerStatus
from .token import TokenCondition


@dataclass(frozen=True)
class ReconcileOutcome:
    """What one reconcile found: the status to write and the TokenValid condition."""

    runner_id: int
    token_expires_at: str | None
    # When the next automatic rotation is due (status.renewalTime); None when the token never expires.
    renewal_time: str | None
    rotation_requested_at: str | None
    ready_replicas: int
    replicas: tuple[ReplicaStatus, ...]
    token_condition: TokenCondition
    ref: RunnerRef
    # spec.replicas (`replicas` also lists scaled-away replicas whose pods still drain)
    spec_replicas: int

    def status_patch(self) -> dict[str, Any]:
        """Only fields with a value: a `null` in Kopf's end-of-handler patch makes it log the patch as
        inconsistent."""
        names = self.ref.children
        fields = {
            "runner_id": self.runner_id,
            "token_secret_name": names.token_secret,
            "config_secret_name": names.config_secret,
            "token_expires_at": self.token_expires_at,
            "renewal_time": self.renewal_time,
            "rotation_requested_at": self.rotation_requested_at,
            "ready_replicas": self.ready_replicas,
            "replicas": self.replicas,
        }
        return RunnerStatus.patch(**{k: v for k, v in fields.items() if v is not None})

    @property
    def online_replicas(self) -> int:
        return sum(1 for r in self.replicas if r["managerStatus"] == "online" and r["ordinal"] < self.spec_replicas)


def open_context(
    kube: Kube,
    pool: GitLabPool,
    ref: RunnerRef,
    spec: Mapping[str, Any],
    emit: EventSink,
    log: Logger,
    *,
    refresh_pods: bool = True,
) -> RunnerContext:
    """Parse the spec, connect to GitLab, read the status as stored now (never the snapshot of the event that
    woke the handler: another handler of the same Runner may have written since)."""
    parsed = parse_spec(spec)
    check_name(ref)
    with failures_explained(parsed):
        gitlab = connect(kube, pool, ref, parsed)
        status = RunnerStatus.from_dict(kube.read_runner_status(ref.namespace, ref.name))
    return RunnerContext(
        ref=ref, spec=parsed, kube=kube, gitlab=gitlab, status=status, emit=emit, log=log, refresh_pods=refresh_pods
    )


def reconcile(ctx: RunnerContext) -> ReconcileOutcome:
    """Make GitLab and the children match the spec."""
    with failures_explained(ctx.spec):
        # First: a missing credential Secret must stop the reconcile before GitLab or the cluster is touched.
        credentials = config_credentials(ctx)
        ensured = registration.ensure_runner(ctx)
        runner_id, current = ensured.runner_id, ensured.token
        if not ensured.fresh:
            current = token.rotate_if_due(ctx, runner_id, current)
        found = [] if ensured.unseen else ctx.gitlab.list_managers(runner_id)  # one call less per new Runner
        checked = (
            token.CheckedToken(current, token.ACCEPTED)
            if ensured.fresh
            else token.ensure_accepted(ctx, runner_id, current, found)
        )
        remaining = managers.remove_stray_managers(ctx, checked.token, found)
        pods = apply_children(ctx, runner_id, checked.token.token, credentials)
        ready = ctx.kube.ready_replicas(ctx.ref.namespace, ctx.ref.children.statefulset)
    return ReconcileOutcome(
        runner_id=runner_id,
        token_expires_at=iso(checked.token.expires_at),
        renewal_time=iso(renewal_due_at(checked.token, ctx.spec.token_rotation.renew_before, ctx.ref.uid)),
        rotation_requested_at=ctx.spec.token_rotation.requested_at,
        ready_replicas=ready,
        replicas=tuple(replica_statuses(ctx.ref.name, ctx.ref.uid, ctx.spec.replicas, remaining, pods)),
        token_condition=checked.condition,
        ref=ctx.ref,
        spec_replicas=ctx.spec.replicas,
    )
