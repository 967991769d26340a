"""Everything one call about one `Runner` works with, in one object: which Runner, its parsed spec, the GitLab
client, its status as stored now, and where Events and log lines go. The use cases take this instead of threading
five arguments through every function."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..core import connection
from ..core.api import RUNNER
from ..core.connection import DEFAULT_POLICY, ConnectionPolicy
from ..core.errors import Explain, ReconcileError
from ..core.events import EventSink
from ..core.gitlab import BatchedRunner
from ..core.namespaces import EVERY_NAMESPACE, Scope
from ..core.objects import owner_reference
from ..core.ports import GitLabConnector, GitLabPort, KubePort
from ..core.reasons import Reason
from ..core.refs import Logger, ObjectRef
from ..core.spec import SpecError
from . import builders
from .batch import RunnerDirectory
from .model import RunnerSpec
from .status import RunnerStatus

ACCESS_TOKEN_NEEDS = "scopes create_runner, manage_runner and read_api, or api"


@dataclass(frozen=True)
class RunnerRef(ObjectRef):
    def owner(self) -> dict[str, Any]:
        return owner_reference(RUNNER, self.name, self.uid)

    @property
    def children(self) -> builders.ChildNames:
        return builders.child_names(self.name)


@dataclass(frozen=True)
class RunnerSettings:
    """The operator's settings the Runner use cases act on."""

    # Annotate manager pods after a config Secret change so the kubelet refreshes their volume at once.
    refresh_pods: bool = True
    # The chart's executor ClusterRole (its permission groups are `<name>-<group>`), bound in executor namespaces.
    executor_role: str = "glrt-operator-executor"
    # Pin the manager pods' user, group and fsGroup; False leaves them to the platform (OpenShift).
    pin_pod_ids: bool = True
    scope: Scope = EVERY_NAMESPACE
    # Batch reads of runners (GraphQL) shared across Runners; None reads each runner over REST.
    directory: RunnerDirectory | None = None
    connections: ConnectionPolicy = DEFAULT_POLICY


DEFAULT_SETTINGS = RunnerSettings()


@dataclass
class RunnerContext:
    ref: RunnerRef
    spec: RunnerSpec
    kube: KubePort
    gitlab: GitLabPort
    status: RunnerStatus
    emit: EventSink
    log: Logger
    settings: RunnerSettings = DEFAULT_SETTINGS
    generation: int | None = None  # of the spec this call acts on
    # What this reconcile read of GitLab's runners: the path (`batch.GRAPHQL` or `batch.REST`) and the batch's runners.
    gitlab_reads: str | None = None
    batched: dict[int, BatchedRunner] = field(default_factory=dict)

    # Status fields `defer` holds for the next `record` (or `flush`).
    deferred: dict[str, Any] = field(default_factory=dict)

    def record(self, **changes: Any) -> None:
        """Write status fields at once, outside Kopf's end-of-handler patch: for facts that must survive a crash
        (the fences around non-idempotent GitLab calls), with any deferred. `self.status` follows."""
        changes = {**self.deferred, **changes}
        self.kube.patch_status(RUNNER, self.ref.namespace, self.ref.name, RunnerStatus.patch(**changes))
        self.status = self.status.updated(**changes)
        self.deferred = {}

    def defer(self, **changes: Any) -> None:
        """Status fields a crash may lose because they can be found again (the runner id, in its token Secret):
        written with the next `record`, or by `flush`. `self.status` follows at once."""
        self.deferred.update(changes)
        self.status = self.status.updated(**changes)

    def flush(self) -> None:
        if self.deferred:
            self.record()


def parse_spec(raw: Mapping[str, Any]) -> RunnerSpec:
    try:
        return RunnerSpec.parse(raw)
    except SpecError as exc:
        raise ReconcileError(Reason.INVALID_SPEC, str(exc), permanent=True) from None


def check_name(ref: RunnerRef) -> None:
    """Before anything is created: the Runner's name must be valid for every object named after it (the CRD
    refuses such names at apply time; this catches Runners stored before that rule)."""
    problem = builders.child_name_problem(ref.name)
    if problem:
        raise ReconcileError(Reason.INVALID_NAME, f"metadata.name {ref.name!r}: {problem}", permanent=True)


def resolve(kube: KubePort, ref: RunnerRef, spec: RunnerSpec, policy: ConnectionPolicy) -> RunnerSpec:
    """The spec with spec.gitlab resolved (`connection.resolve`)."""
    return replace(spec, gitlab=connection.resolve(kube, ref.namespace, spec.gitlab, policy))


def connect(
    kube: KubePort, pool: GitLabConnector, ref: RunnerRef, spec: RunnerSpec, policy: ConnectionPolicy = DEFAULT_POLICY
) -> GitLabPort:
    gitlab = resolve(kube, ref, spec, policy).gitlab
    return connection.connect(kube, pool, ref.namespace, gitlab, ACCESS_TOKEN_NEEDS)


def explainer(spec: RunnerSpec) -> Explain:
    """GitLab's failures with the hints that name this Runner's fields (for `core.errors.failures_explained`)."""
    scope = spec.runner_type.replace("_type", "")

    def explain(exc: BaseException) -> ReconcileError | None:
        return connection.explain_gitlab(
            exc,
            spec.gitlab,
            forbidden=f"it needs create_runner (and manage_runner to update, rotate and delete) and the right role on "
            f"the {scope}.",
            not_found="GitLab does not know this runner, project or group: check spec.projectId / spec.groupId.",
        )

    return explain
