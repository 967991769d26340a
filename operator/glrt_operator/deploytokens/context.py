"""Everything one call about one `DeployToken` works with: which object, its parsed spec, the GitLab client, its
status as stored now, and where Events and log lines go; and the translation of failures into `ReconcileError`s
whose message says what to fix."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..core import connection
from ..core.api import DEPLOY_TOKEN
from ..core.connection import DEFAULT_POLICY, ConnectionPolicy
from ..core.errors import Explain, ReconcileError
from ..core.events import EventSink
from ..core.ports import GitLabConnector, GitLabPort, KubePort, SecretObject
from ..core.reasons import Reason
from ..core.refs import Logger, ObjectRef
from ..core.spec import SpecError
from . import builders
from .model import DeployTokenSpec
from .status import DeployTokenStatus

ACCESS_TOKEN_NEEDS = "scope api, of a project Maintainer or group Owner"


@dataclass(frozen=True)
class DeployTokenRef(ObjectRef):
    @property
    def token_name(self) -> str:
        """The name every token this object creates carries in GitLab: the marker that finds strays."""
        return builders.token_name(self.namespace, self.name, self.uid)


@dataclass
class DeployTokenContext:
    ref: DeployTokenRef
    spec: DeployTokenSpec
    kube: KubePort
    gitlab: GitLabPort
    status: DeployTokenStatus
    emit: EventSink
    log: Logger

    def record(self, **changes: Any) -> None:
        """Write status fields at once, outside Kopf's end-of-handler patch: the fence and the token ids must
        survive a crash. `self.status` follows."""
        self.kube.patch_status(DEPLOY_TOKEN, self.ref.namespace, self.ref.name, DeployTokenStatus.patch(**changes))
        self.status = self.status.updated(**changes)


def parse_spec(raw: Mapping[str, Any]) -> DeployTokenSpec:
    try:
        return DeployTokenSpec.parse(raw)
    except SpecError as exc:
        raise ReconcileError(Reason.INVALID_SPEC, str(exc), permanent=True) from None


def check_secret_free(kube: KubePort, ref: DeployTokenRef, spec: DeployTokenSpec) -> SecretObject | None:
    """The Secret of spec.secret.name when it is ours or absent (None); refuses one someone else owns, before
    anything is created in GitLab."""
    secret = kube.read_secret(ref.namespace, spec.secret.name)
    if secret is None or ref.uid in secret.owners:
        return secret
    where = f"Secret {spec.secret.name!r} in namespace {ref.namespace!r}"
    if secret.owners:
        raise ReconcileError(
            Reason.SECRET_NAME_TAKEN,
            f"{where} belongs to another object; waiting for it to go. If it is not being deleted, choose another "
            "spec.secret.name.",
        )
    raise ReconcileError(
        Reason.SECRET_NAME_TAKEN,
        f"{where} already exists and is not managed by this DeployToken: delete it or choose another "
        "spec.secret.name (the operator only writes Secrets it owns).",
    )


def resolve(kube: KubePort, ref: DeployTokenRef, spec: DeployTokenSpec, policy: ConnectionPolicy) -> DeployTokenSpec:
    """The spec with spec.gitlab resolved (`connection.resolve`)."""
    return replace(spec, gitlab=connection.resolve(kube, ref.namespace, spec.gitlab, policy))


def connect(
    kube: KubePort,
    pool: GitLabConnector,
    ref: DeployTokenRef,
    spec: DeployTokenSpec,
    policy: ConnectionPolicy = DEFAULT_POLICY,
) -> GitLabPort:
    gitlab = connection.resolve(kube, ref.namespace, spec.gitlab, policy)
    return connection.connect(kube, pool, ref.namespace, gitlab, ACCESS_TOKEN_NEEDS)


def explainer(spec: DeployTokenSpec) -> Explain:
    """GitLab's failures with the hints that name this DeployToken's fields."""
    role = (
        f"the Maintainer role on project {spec.project_id}"
        if spec.project_id is not None
        else f"the Owner role on group {spec.group_id} (Maintainer can only read group deploy tokens)"
    )

    def explain(exc: BaseException) -> ReconcileError | None:
        return connection.explain_gitlab(
            exc,
            spec.gitlab,
            forbidden=f"deploy tokens need scope api and {role}.",
            not_found="GitLab does not know this project or group, or the access token cannot see it: check "
            "spec.projectId / spec.groupId.",
        )

    return explain
