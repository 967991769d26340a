"""Everything one call about one `Runner` works with, in one object: which Runner, its parsed spec, the GitLab
client, its status as stored now, and where Events and log lines go. The use cases take this instead of threading
five arguments through every function."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..adapters.gitlab import GitLabClient, GitLabError, GitLabPool
from ..adapters.kube import GROUP, VERSION, Kube
from ..core.errors import ReconcileError, classify
from ..core.events import EventSink
from ..core.refs import Logger, ObjectRef
from . import builders
from .model import GitLabSpec, RunnerSpec, SpecError
from .status import RunnerStatus


@dataclass(frozen=True)
class RunnerRef(ObjectRef):
    def owner(self) -> dict[str, Any]:
        return builders.owner_reference(f"{GROUP}/{VERSION}", "Runner", self.name, self.uid)

    @property
    def children(self) -> builders.ChildNames:
        return builders.child_names(self.name)


@dataclass
class RunnerContext:
    ref: RunnerRef
    spec: RunnerSpec
    kube: Kube
    gitlab: GitLabClient
    status: RunnerStatus
    emit: EventSink
    log: Logger
    # Annotate manager pods after a config Secret change so the kubelet refreshes their volume at once.
    refresh_pods: bool = True

    def record(self, **changes: Any) -> None:
        """Write status fields at once, outside Kopf's end-of-handler patch: for facts that must survive a crash
        (the fences around non-idempotent GitLab calls). `self.status` follows."""
        self.kube.patch_runner_status(self.ref.namespace, self.ref.name, RunnerStatus.patch(**changes))
        self.status = self.status.updated(**changes)


def parse_spec(raw: Mapping[str, Any]) -> RunnerSpec:
    try:
        return RunnerSpec.parse(raw)
    except SpecError as exc:
        raise ReconcileError("InvalidSpec", str(exc), permanent=True) from None


def check_name(ref: RunnerRef) -> None:
    """Before anything is created: the Runner's name must be valid for every object named after it (the CRD
    refuses such names at apply time; this catches Runners stored before that rule)."""
    problem = builders.child_name_problem(ref.name)
    if problem:
        raise ReconcileError("InvalidName", f"metadata.name {ref.name!r}: {problem}", permanent=True)


def read_ca(kube: Kube, namespace: str, gitlab: GitLabSpec) -> str | None:
    """The CA bundle of spec.gitlab.caSecretRef, None without one; CASecretMissing when it names nothing."""
    ca = gitlab.ca
    if ca is None:
        return None
    ca_pem = kube.read_secret_value(namespace, ca.name, ca.key)
    if not ca_pem:
        raise ReconcileError(
            "CASecretMissing",
            f"Secret {ca.name!r} with key {ca.key!r} (spec.gitlab.caSecretRef) not found in namespace {namespace!r}.",
        )
    return ca_pem


def gitlab_client(kube: Kube, pool: GitLabPool, namespace: str, gitlab: GitLabSpec, needs: str) -> GitLabClient:
    """A GitLab client with the access token of spec.gitlab.credentialsSecretRef (and the CA, when set), for a
    Runner or a DeployToken; `needs` says which access token to put in the Secret when it is missing."""
    creds = gitlab.credentials
    # Trailing whitespace is common (`--from-file` of an echoed file) and never part of a token.
    token = (kube.read_secret_value(namespace, creds.name, creds.key) or "").strip()
    if not token:
        raise ReconcileError(
            "CredentialsMissing",
            f"Secret {creds.name!r} with key {creds.key!r} not found in namespace {namespace!r}: create it "
            f"with a GitLab access token ({needs}).",
        )
    return pool.client(gitlab.api_url, token, read_ca(kube, namespace, gitlab))


def connect(kube: Kube, pool: GitLabPool, ref: RunnerRef, spec: RunnerSpec) -> GitLabClient:
    return gitlab_client(
        kube, pool, ref.namespace, spec.gitlab, "scopes create_runner, manage_runner and read_api, or api"
    )


def explain(exc: GitLabError, spec: RunnerSpec) -> ReconcileError:
    """Turn a GitLab failure into a message that says what to fix."""
    secret = f"Secret {spec.gitlab.credentials.name!r} (key {spec.gitlab.credentials.key!r})"
    ca = spec.gitlab.ca
    hints: dict[int | str, str] = {
        401: f"GitLab refused the access token in {secret}: it is unknown, expired or revoked. Put a valid one in.",
        403: f"The access token in {secret} lacks a scope or permission: it needs create_runner (and manage_runner "
        f"to update, rotate and delete) and the right role on the {spec.runner_type.replace('_type', '')}.",
        404: "GitLab does not know this runner, project or group: check spec.projectId / spec.groupId.",
        "AccessTokenMalformed": f"Re-create {secret} with the bare token (no byte-order mark, quotes or inner "
        "whitespace), e.g. kubectl create secret generic --from-literal.",
        "CAInvalid": f"Put a PEM CA bundle in Secret {ca.name!r} key {ca.key!r} (spec.gitlab.caSecretRef)."
        if ca
        else "",
        "TLSVerificationFailed": "Set spec.gitlab.caSecretRef to a Secret holding the CA that signs GitLab's "
        "certificate.",
    }
    hint = hints.get(exc.kind or "", "") or hints.get(exc.status or 0, "")
    message = f"{exc} {hint}".strip()
    return ReconcileError(exc.reason, message, delay=exc.retry_after, transient=exc.retryable)


@contextmanager
def failures_explained(spec: RunnerSpec) -> Iterator[None]:
    """Every failure as a ReconcileError (core.errors.classify), GitLab's with hints naming this Runner's
    fields: a message that says what to fix, for a condition."""
    try:
        yield
    except GitLabError as exc:
        raise explain(exc, spec) from None
    except ReconcileError:
        raise
    except Exception as exc:  # the one classification point
        raise classify(exc) from None
