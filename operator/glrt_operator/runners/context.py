"""Everything one call about one `Runner` works with, in one object: which Runner, its parsed spec, the GitLab
client, its status as stored now, and where Events and log lines go. The use cases take this instead of threading
five arguments through every function."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from ..adapters.gitlab import GitLabClient, GitLabError, GitLabPool
from ..adapters.kube import GROUP, VERSION, Kube, describe_api_error
from ..core.errors import ReconcileError
from ..core.events import EventSink
from . import builders
from .model import RunnerSpec, SpecError
from .status import RunnerStatus

Logger = logging.Logger | logging.LoggerAdapter[Any]


@dataclass(frozen=True)
class RunnerRef:
    namespace: str
    name: str
    uid: str

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> RunnerRef:
        meta = body["metadata"]
        return cls(meta["namespace"], meta["name"], meta["uid"])

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


def read_ca(kube: Kube, ref: RunnerRef, spec: RunnerSpec) -> str | None:
    """The CA bundle of spec.gitlab.caSecretRef, None without one; CASecretMissing when it names nothing."""
    ca = spec.gitlab.ca
    if ca is None:
        return None
    ca_pem = kube.read_secret_value(ref.namespace, ca.name, ca.key)
    if not ca_pem:
        raise ReconcileError(
            "CASecretMissing",
            f"Secret {ca.name!r} with key {ca.key!r} (spec.gitlab.caSecretRef) not found in namespace "
            f"{ref.namespace!r}.",
        )
    return ca_pem


def connect(kube: Kube, pool: GitLabPool, ref: RunnerRef, spec: RunnerSpec) -> GitLabClient:
    """A GitLab client with the access token of spec.gitlab.credentialsSecretRef (and the CA, when set)."""
    creds = spec.gitlab.credentials
    # Trailing whitespace is common (`--from-file` of an echoed file) and never part of a token.
    token = (kube.read_secret_value(ref.namespace, creds.name, creds.key) or "").strip()
    if not token:
        raise ReconcileError(
            "CredentialsMissing",
            f"Secret {creds.name!r} with key {creds.key!r} not found in namespace {ref.namespace!r}: create it "
            "with a GitLab access token (scopes create_runner, manage_runner and read_api, or api).",
        )
    return pool.client(spec.gitlab.api_url, token, read_ca(kube, ref, spec))


def explain(exc: GitLabError, spec: RunnerSpec) -> ReconcileError:
    """Turn a GitLab failure into a message that says what to fix."""
    secret = f"Secret {spec.gitlab.credentials.name!r} (key {spec.gitlab.credentials.key!r})"
    hints = {
        401: f"GitLab refused the access token in {secret}: it is unknown, expired or revoked. Put a valid one in.",
        403: f"The access token in {secret} lacks a scope or permission: it needs create_runner (and manage_runner "
        f"to update, rotate and delete) and the right role on the {spec.runner_type.replace('_type', '')}.",
        404: "GitLab does not know this runner, project or group: check spec.projectId / spec.groupId.",
    }
    hint = hints.get(exc.status or 0, "")
    message = f"{exc} {hint}".strip()
    return ReconcileError(exc.reason, message, delay=exc.retry_after)


@contextmanager
def failures_explained(spec: RunnerSpec) -> Iterator[None]:
    """GitLab and Kubernetes failures as ReconcileErrors: a message that says what to fix, for a condition."""
    try:
        yield
    except GitLabError as exc:
        raise explain(exc, spec) from None
    except ApiException as exc:
        raise ReconcileError("KubernetesAPIError", describe_api_error(exc)) from None
