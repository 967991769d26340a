"""The two outside systems as the use cases see them: typed ports (`typing.Protocol`) that the real adapters
(`adapters.kube.Kube`, `adapters.gitlab.GitLabClient`/`GitLabPool`) and the tests' in-memory Kubernetes satisfy
(mypy checks both), and the typed values the Kubernetes port hands back."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

from .api import Kind
from .gitlab import (
    CreatedDeployToken,
    CreatedRunner,
    DeployTokenInfo,
    IssuedToken,
    RunnerDetails,
    RunnerManager,
    RunnerSummary,
)


@dataclass(frozen=True)
class SecretObject:
    """A Secret as the operator reads it: metadata it acts on and the decoded data. Never logged (no repr of data)."""

    name: str
    annotations: Mapping[str, str] = field(default_factory=dict)
    data: Mapping[str, str] = field(default_factory=dict, repr=False)
    owners: tuple[str, ...] = ()  # the uids of its owner references
    type: str | None = None
    resource_version: str = ""

    def value(self, key: str) -> str | None:
        return self.data.get(key) or None


@dataclass(frozen=True)
class ChildObject:
    """A child object the operator applies (StatefulSet, ServiceAccount, PodDisruptionBudget, RoleBinding) as
    read: what tells whether it needs applying, and for a StatefulSet its ready replicas."""

    annotations: Mapping[str, str] = field(default_factory=dict)
    owners: tuple[str, ...] = ()
    ready_replicas: int = 0


# The kinds `KubePort.read_child` reads.
CHILD_KINDS = ("StatefulSet", "ServiceAccount", "PodDisruptionBudget", "RoleBinding")


@dataclass(frozen=True)
class PodInfo:
    """What the operator needs of a runner manager pod: is it stopping, and its annotations."""

    name: str
    terminating: bool
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class ResourceAccess:
    """One permission: a verb on a resource (`pods`, `pods/exec` is resource `pods`, subresource `exec`)."""

    api_group: str
    resource: str
    subresource: str
    verb: str


class KubePort(Protocol):
    """The reads and writes the use cases make in the cluster (Kopf does the watching)."""

    def read_secret(self, namespace: str, name: str) -> SecretObject | None: ...
    def apply_secret(self, secret: Mapping[str, Any]) -> str: ...
    def delete_secret(self, namespace: str, name: str) -> bool: ...
    def apply_statefulset(self, statefulset: Mapping[str, Any]) -> None: ...
    def read_child(self, kind: str, namespace: str, name: str) -> ChildObject | None: ...
    def dry_run_statefulset(self, statefulset: Mapping[str, Any]) -> None: ...
    def statefulset_owners(self, namespace: str, name: str) -> list[str] | None: ...
    def ready_replicas(self, namespace: str, name: str) -> int: ...
    def pod_exists(self, namespace: str, name: str) -> bool: ...
    def list_pods(self, namespace: str, label_selector: str) -> list[PodInfo]: ...
    def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None: ...
    def scale_statefulset(self, namespace: str, name: str, replicas: int) -> None: ...
    def read_namespace(self, name: str) -> Mapping[str, str] | None: ...
    def service_account_exists(self, namespace: str, name: str) -> bool: ...
    def apply_service_account(self, account: Mapping[str, Any]) -> None: ...
    def apply_role_binding(self, binding: Mapping[str, Any]) -> None: ...
    def delete_role_binding(self, namespace: str, name: str) -> bool: ...
    def apply_disruption_budget(self, budget: Mapping[str, Any]) -> None: ...
    def service_account_may(self, account: tuple[str, str], namespace: str, access: ResourceAccess) -> bool: ...
    def read_status(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]: ...
    def patch_status(self, kind: Kind, namespace: str, name: str, status: Mapping[str, Any]) -> None: ...


class GitLabPort(Protocol):
    """Every call the use cases make to one GitLab with one access token."""

    def create_runner(self, attributes: Mapping[str, Any]) -> CreatedRunner: ...
    def get_runner(self, runner_id: int) -> RunnerDetails | None: ...
    def update_runner(self, runner_id: int, attributes: Mapping[str, Any]) -> RunnerDetails: ...
    def delete_runner(self, runner_id: int) -> bool: ...
    def reset_token(self, runner_id: int) -> IssuedToken: ...
    def list_managers(self, runner_id: int) -> list[RunnerManager]: ...
    def list_runners(self, path: str, **filters: str) -> Iterator[RunnerSummary]: ...
    def delete_manager(self, runner_token: str, system_id: str) -> bool: ...
    def delete_runner_by_token(self, runner_token: str) -> bool: ...
    def token_is_valid(self, runner_token: str) -> bool: ...
    def create_deploy_token(
        self, scope_path: str, *, name: str, scopes: Sequence[str], expires_on: date | None, username: str | None
    ) -> CreatedDeployToken: ...
    def list_deploy_tokens(self, scope_path: str) -> list[DeployTokenInfo]: ...
    def revoke_deploy_token(self, scope_path: str, token_id: int) -> bool: ...


class GitLabConnector(Protocol):
    """Where GitLab clients come from (the operator's shared pool)."""

    def client(self, api_url: str, access_token: str, ca_pem: str | None = None) -> GitLabPort: ...
    def for_resyncs(self) -> GitLabConnector: ...
