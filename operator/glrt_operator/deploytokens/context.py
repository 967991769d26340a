"""Everything one call about one `DeployToken` works with: which object, its parsed spec, the GitLab client, its
status as stored now, and where Events and log lines go; and the translation of failures into `ReconcileError`s
whose message says what to fix."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..adapters.gitlab import GitLabClient, GitLabError, GitLabPool
from ..adapters.kube import Kube
from ..core.errors import ReconcileError, classify
from ..core.events import EventSink
from ..core.refs import Logger, ObjectRef
from ..runners.context import gitlab_client
from ..runners.model import SpecError
from . import builders
from .model import DeployTokenSpec
from .status import DeployTokenStatus


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
    kube: Kube
    gitlab: GitLabClient
    status: DeployTokenStatus
    emit: EventSink
    log: Logger

    def record(self, **changes: Any) -> None:
        """Write status fields at once, outside Kopf's end-of-handler patch: the fence and the token ids must
        survive a crash. `self.status` follows."""
        self.kube.patch_deploy_token_status(self.ref.namespace, self.ref.name, DeployTokenStatus.patch(**changes))
        self.status = self.status.updated(**changes)


def parse_spec(raw: Mapping[str, Any]) -> DeployTokenSpec:
    try:
        return DeployTokenSpec.parse(raw)
    except SpecError as exc:
        raise ReconcileError("InvalidSpec", str(exc), permanent=True) from None


def check_secret_free(kube: Kube, ref: DeployTokenRef, spec: DeployTokenSpec) -> dict[str, Any] | None:
    """The Secret of spec.secret.name when it is ours or absent (None); refuses one someone else owns, before
    anything is created in GitLab."""
    secret: dict[str, Any] | None = kube.read_secret(ref.namespace, spec.secret.name)
    if secret is None or ref.uid in secret["owners"]:
        return secret
    where = f"Secret {spec.secret.name!r} in namespace {ref.namespace!r}"
    if secret["owners"]:
        raise ReconcileError(
            "SecretNameTaken",
            f"{where} belongs to another object; waiting for it to go. If it is not being deleted, choose another "
            "spec.secret.name.",
        )
    raise ReconcileError(
        "SecretNameTaken",
        f"{where} already exists and is not managed by this DeployToken: delete it or choose another "
        "spec.secret.name (the operator only writes Secrets it owns).",
    )


def connect(kube: Kube, pool: GitLabPool, ref: DeployTokenRef, spec: DeployTokenSpec) -> GitLabClient:
    needs = "scope api, of a project Maintainer or group Owner"
    return gitlab_client(kube, pool, ref.namespace, spec.gitlab, needs)


def explain(exc: GitLabError, spec: DeployTokenSpec) -> ReconcileError:
    """A GitLab failure as a message that says what to fix."""
    secret = f"Secret {spec.gitlab.credentials.name!r} (key {spec.gitlab.credentials.key!r})"
    role = (
        f"the Maintainer role on project {spec.project_id}"
        if spec.project_id is not None
        else f"the Owner role on group {spec.group_id} (Maintainer can only read group deploy tokens)"
    )
    hints = {
        401: f"GitLab refused the access token in {secret}: it is unknown, expired or revoked. Put a valid one in.",
        403: f"The access token in {secret} lacks a right: deploy tokens need scope api and {role}.",
        404: "GitLab does not know this project or group, or the access token cannot see it: check "
        "spec.projectId / spec.groupId.",
    }
    message = f"{exc} {hints.get(exc.status or 0, '')}".strip()
    return ReconcileError(exc.reason, message, delay=exc.retry_after, transient=exc.retryable)


@contextmanager
def failures_explained(spec: DeployTokenSpec) -> Iterator[None]:
    try:
        yield
    except GitLabError as exc:
        raise explain(exc, spec) from None
    except ReconcileError:
        raise
    except Exception as exc:  # the one classification point (Kubernetes errors quote the apiserver)
        raise classify(exc) from None
