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
from . import managers, registration, token
from .children import apply_children
from .context import Logger, RunnerContext, RunnerRef, connect, failures_explained, parse_spec
from .replicas import replica_statuses
from .status import ReplicaStatus, RunnerStatus
from .token import TokenCondition


@dataclass(frozen=True)
class ReconcileOutcome:
    """What one reconcile found: the status to write and the TokenValid condition."""

    runner_id: int
    token_expires_at: str | None
    rotation_requested_at: str | None
    ready_replicas: int
    replicas: tuple[ReplicaStatus, ...]
    token_condition: TokenCondition
    ref: RunnerRef

    def status_patch(self) -> dict[str, Any]:
        names = self.ref.children
        return RunnerStatus.patch(
            runner_id=self.runner_id,
            token_secret_name=names.token_secret,
            config_secret_name=names.config_secret,
            token_expires_at=self.token_expires_at,
            rotation_requested_at=self.rotation_requested_at,
            ready_replicas=self.ready_replicas,
            replicas=self.replicas,
        )

    @property
    def online_replicas(self) -> int:
        return sum(1 for r in self.replicas if r["managerStatus"] == "online")


def open_context(
    kube: Kube, pool: GitLabPool, ref: RunnerRef, spec: Mapping[str, Any], emit: EventSink, log: Logger
) -> RunnerContext:
    """Parse the spec, connect to GitLab, read the status as stored now (never the snapshot of the event that
    woke the handler: another handler of the same Runner may have written since)."""
    parsed = parse_spec(spec)
    with failures_explained(parsed):
        gitlab = connect(kube, pool, ref, parsed)
        status = RunnerStatus.from_dict(kube.read_runner_status(ref.namespace, ref.name))
    return RunnerContext(ref=ref, spec=parsed, kube=kube, gitlab=gitlab, status=status, emit=emit, log=log)


def reconcile(ctx: RunnerContext) -> ReconcileOutcome:
    """Make GitLab and the children match the spec."""
    with failures_explained(ctx.spec):
        ensured = registration.ensure_runner(ctx)
        runner_id, current = ensured.runner_id, ensured.token
        if not ensured.fresh:
            current = token.rotate_if_due(ctx, runner_id, current)
        found = ctx.gitlab.list_managers(runner_id)
        checked = (
            token.CheckedToken(current, token.ACCEPTED)
            if ensured.fresh
            else token.ensure_accepted(ctx, runner_id, current, found)
        )
        remaining = managers.remove_stray_managers(ctx, checked.token, found)
        apply_children(ctx, runner_id, checked.token.token)
        ready = ctx.kube.ready_replicas(ctx.ref.namespace, ctx.ref.children.statefulset)
    return ReconcileOutcome(
        runner_id=runner_id,
        token_expires_at=iso(checked.token.expires_at),
        rotation_requested_at=ctx.spec.token_rotation.requested_at,
        ready_replicas=ready,
        replicas=tuple(replica_statuses(ctx.ref.name, ctx.ref.uid, ctx.spec.replicas, remaining)),
        token_condition=checked.condition,
        ref=ctx.ref,
    )
