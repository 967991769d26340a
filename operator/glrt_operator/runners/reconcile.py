"""Bringing GitLab and the cluster in step with one `Runner`: the orchestration of the use cases.

Level-based and idempotent: every call reads what exists and does only what is missing. The steps, each in its
own module: the runner in GitLab (`registration`), its token (`token`), its runner managers (`managers`), the
objects in the cluster (`children`). Deletion is in `deletion`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import metrics
from ..core.api import RUNNER
from ..core.conditions import set_condition
from ..core.errors import failures_explained
from ..core.events import EventSink
from ..core.ports import GitLabConnector, KubePort
from ..core.reasons import ConditionType, Reason
from ..core.refs import Logger
from ..core.times import iso, parse_time
from . import access, batch, managers, registration, token
from .children import apply_children
from .context import (
    DEFAULT_SETTINGS,
    RunnerContext,
    RunnerRef,
    RunnerSettings,
    check_name,
    connect,
    explainer,
    parse_spec,
    resolve,
)
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
    # How GitLab's runners were read: `batch.GRAPHQL` or `batch.REST` (status.gitlabReads); None: not read.
    gitlab_reads: str | None = None

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
            "gitlab_reads": self.gitlab_reads,
        }
        return RunnerStatus.patch(**{k: v for k, v in fields.items() if v is not None})

    @property
    def online_replicas(self) -> int:
        return sum(1 for r in self.replicas if r["managerStatus"] == "online" and r["ordinal"] < self.spec_replicas)

    def ready_status(self, conditions: Sequence[Mapping[str, Any]], generation: int | None) -> dict[str, Any]:
        """The status of the reconciled Runner: its fields, TokenValid, and Ready=True."""
        message = (
            f"Runner {self.runner_id} is registered in GitLab; {self.ready_replicas}/{self.spec_replicas} "
            f"pod(s) ready, {self.online_replicas} online in GitLab"
        )
        t = self.token_condition
        updated = set_condition(conditions, ConditionType.TOKEN_VALID, t.status, t.reason, t.message, generation)
        ready = set_condition(updated, ConditionType.READY, "True", Reason.RECONCILED, message, generation)
        return {**self.status_patch(), **RunnerStatus.patch(observed_generation=generation, conditions=tuple(ready))}

    def observe(self) -> None:
        """The metrics of a reconciled Runner."""
        metrics.observe_runner(
            self.ref.namespace,
            self.ref.name,
            expires_at=parse_time(self.token_expires_at),
            renewal_at=parse_time(self.renewal_time),
            manager_statuses=[r["managerStatus"] for r in self.replicas],
        )


def open_context(
    kube: KubePort,
    pool: GitLabConnector,
    ref: RunnerRef,
    spec: Mapping[str, Any],
    emit: EventSink,
    log: Logger,
    *,
    settings: RunnerSettings = DEFAULT_SETTINGS,
    generation: int | None = None,
) -> RunnerContext:
    """Parse the spec, connect to GitLab, read the status as stored now (never the snapshot of the event that
    woke the handler: another handler of the same Runner may have written since)."""
    parsed = parse_spec(spec)
    check_name(ref)
    with failures_explained(lambda _: None):
        parsed = resolve(kube, ref, parsed, settings.connections)
    with failures_explained(explainer(parsed)):
        gitlab = connect(kube, pool, ref, parsed)
        status = RunnerStatus.from_dict(kube.read_status(RUNNER, ref.namespace, ref.name))
    return RunnerContext(
        ref=ref,
        spec=parsed,
        kube=kube,
        gitlab=gitlab,
        status=status,
        emit=emit,
        log=log,
        settings=settings,
        generation=generation,
    )


def reconcile(ctx: RunnerContext) -> ReconcileOutcome:
    """Make GitLab and the children match the spec."""
    with failures_explained(explainer(ctx.spec)):
        # First: a missing credential Secret, or job pods that could not run, must stop the reconcile before GitLab
        # or the cluster is touched.
        credentials = config_credentials(ctx)
        executor = access.needed(ctx)
        access.check(ctx, executor)
        ensured = registration.ensure_runner(ctx)
        runner_id, current = ensured.runner_id, ensured.token
        if not ensured.fresh:
            current = token.rotate_if_due(ctx, runner_id, current)
        found = [] if ensured.unseen else batch.read_managers(ctx, runner_id)  # one call less per new Runner
        checked = (
            token.CheckedToken(current, token.ACCEPTED)
            if ensured.fresh
            else token.ensure_accepted(ctx, runner_id, current, found)
        )
        remaining = managers.remove_stray_managers(ctx, checked.token, found)
        access.grant(ctx, executor)
        applied = apply_children(ctx, runner_id, checked.token.token, credentials)
        pods, ready = applied.pods, applied.ready_replicas
        ctx.flush()
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
        gitlab_reads=ctx.gitlab_reads,
    )
