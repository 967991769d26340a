"""The reconcile tier: the use cases run in-process against the fake GitLab (a real HTTP server on loopback) and
an in-memory stand-in for the Kubernetes adapter. Fast (no control plane), and every branch is reachable by
arranging state in the two dicts-and-HTTP worlds, never by patching the code under test."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import certifi
import pytest
from kubernetes.client.exceptions import ApiException

# The Kubernetes adapter registers how its ApiExceptions read as conditions, as it does in the operator.
import glrt_operator.adapters.kube  # noqa: F401
from glrt_operator.adapters.gitlab import GitLabClient, GitLabPool
from glrt_operator.controller import runtime
from glrt_operator.controller.pacing import Pacing
from glrt_operator.core.api import CONNECTION_KINDS, RUNNER, Kind
from glrt_operator.core.events import EventType
from glrt_operator.core.ports import ChildObject, KubePort, PodInfo, ResourceAccess, SecretObject
from glrt_operator.runners import handlers
from glrt_operator.runners.batch import RunnerDirectory
from glrt_operator.runners.context import DEFAULT_SETTINGS, RunnerRef, RunnerSettings
from glrt_operator.runners.deletion import delete_runner
from glrt_operator.runners.reconcile import ReconcileOutcome, open_context, reconcile
from tests.fake_gitlab import FakeGitLab

NAMESPACE = "ci"
UID = "5d1c6c8e-0000-4000-8000-00000000abcd"
# A real CA certificate (the first of certifi's bundle): the pool builds an SSL context from it.
CA_PEM = Path(certifi.where()).read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
LOG = logging.getLogger("tests.reconcile")


class InMemoryKube:
    """The Kubernetes port (`glrt_operator.core.ports.KubePort`) over dicts. `fail[method]` makes a method raise
    that ApiException (as the apiserver would, e.g. 403 for a missing RBAC rule)."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, Any]] = {}
        self.statefulsets: dict[str, dict[str, Any]] = {}
        self.sts_owners: dict[str, list[str]] = {}
        self.pods: set[str] = set()
        self.terminating: set[str] = set()  # of `pods`: stopping (a deletionTimestamp)
        self.pod_annotations: dict[str, dict[str, str]] = {}
        self.pod_patches: list[tuple[str, dict[str, str]]] = []
        self.resource_versions: dict[str, int] = {}
        self.status: dict[str, Any] = {}
        self.ready = 0
        self.fail: dict[str, ApiException] = {}
        self.status_writes: list[dict[str, Any]] = []
        self.event_views: list[bool] = []  # each event view asked for: with the children from the caches?
        self.dry_runs = 0
        self.deploy_token_status: dict[str, Any] = {}
        self.connection_status: dict[str, Any] = {}
        self.namespaces: dict[str, dict[str, str]] = {NAMESPACE: {}}  # name -> annotations
        self.labels: dict[str, dict[str, str]] = {}  # namespace name -> labels (a missing one has none)
        # The operator's own objects by (plural, namespace or None when cluster-scoped, name): connections.
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.object_reads: list[tuple[str, str | None, str]] = []
        self.service_accounts: dict[tuple[str, str], dict[str, Any]] = {}
        self.role_bindings: dict[tuple[str, str], dict[str, Any]] = {}
        self.disruption_budgets: dict[str, dict[str, Any]] = {}
        # What a ServiceAccount (namespace, name) may do, as LocalSubjectAccessReviews answer: (namespace, access).
        self.granted: dict[tuple[str, str], set[tuple[str, ResourceAccess]]] = {}
        # Every write request, by method name, as the API server would count it (a no-op apply included).
        self.writes: list[str] = []

    def _check(self, method: str) -> None:
        if method in self.fail:
            raise self.fail[method]

    def _write(self, method: str) -> None:
        self._check(method)
        self.writes.append(method)

    def put_secret(self, name: str, data: Mapping[str, str], owners: list[str] | None = None) -> None:
        self.secrets[name] = {"annotations": {}, "data": dict(data), "owners": list(owners or [])}

    @staticmethod
    def _key(namespace: str, name: str) -> str:
        """`secrets` holds the Runner's namespace's Secrets by name, others' as `namespace/name`."""
        return name if namespace == NAMESPACE else f"{namespace}/{name}"

    def read_secret(self, namespace: str, name: str) -> SecretObject | None:
        self._check("read_secret")
        secret = self.secrets.get(self._key(namespace, name))
        if secret is None:
            return None
        return SecretObject(
            name=name,
            annotations=dict(secret["annotations"]),
            data=dict(secret["data"]),
            owners=tuple(secret["owners"]),
            type=secret.get("type"),
            resource_version=str(self.resource_versions.get(self._key(namespace, name), 0)),
        )

    def apply_secret(self, secret: Mapping[str, Any]) -> str:
        """Like server-side apply: the resourceVersion moves only when the Secret changed."""
        self._write("apply_secret")
        meta = secret["metadata"]
        applied = {
            "annotations": dict(meta.get("annotations") or {}),
            "data": {k: base64.b64decode(v).decode() for k, v in secret["data"].items()},
            "owners": [o["uid"] for o in meta.get("ownerReferences", [])],
            "type": secret.get("type"),
        }
        key = self._key(meta["namespace"], meta["name"])
        if self.secrets.get(key) != applied:
            self.secrets[key] = applied
            self.resource_versions[key] = self.resource_versions.get(key, 0) + 1
        return str(self.resource_versions[key])

    def delete_secret(self, namespace: str, name: str) -> bool:
        self._write("delete_secret")
        return self.secrets.pop(self._key(namespace, name), None) is not None

    def apply_statefulset(self, statefulset: Mapping[str, Any]) -> None:
        self._write("apply_statefulset")
        meta = statefulset["metadata"]
        self.statefulsets[meta["name"]] = dict(statefulset)
        self.sts_owners[meta["name"]] = [o["uid"] for o in meta.get("ownerReferences", [])]

    def dry_run_statefulset(self, statefulset: Mapping[str, Any]) -> None:
        self._check("dry_run_statefulset")
        self.dry_runs += 1

    def read_child(self, kind: str, namespace: str, name: str) -> ChildObject | None:
        self._check("read_child")
        found = {
            "StatefulSet": self.statefulsets.get(name),
            "ServiceAccount": self.service_accounts.get((namespace, name)),
            "PodDisruptionBudget": self.disruption_budgets.get(name),
            "RoleBinding": self.role_bindings.get((namespace, name)),
        }[kind]
        if found is None:
            return None
        meta = found["metadata"]
        return ChildObject(
            annotations=dict(meta.get("annotations") or {}),
            owners=tuple(o["uid"] for o in meta.get("ownerReferences", [])),
            ready_replicas=self.ready if kind == "StatefulSet" else 0,
        )

    def statefulset_owners(self, namespace: str, name: str) -> list[str] | None:
        self._check("statefulset_owners")
        return self.sts_owners.get(name)

    def ready_replicas(self, namespace: str, name: str) -> int:
        return self.ready

    def pod_exists(self, namespace: str, name: str) -> bool:
        return name in self.pods

    def list_pods(self, namespace: str, label_selector: str) -> list[PodInfo]:
        self._check("list_pods")
        runner = label_selector.split("=", 1)[1]
        return [
            PodInfo(name=n, terminating=n in self.terminating, annotations=dict(self.pod_annotations.get(n, {})))
            for n in sorted(self.pods)
            if n.rsplit("-", 1)[0] == runner
        ]

    def scale_statefulset(self, namespace: str, name: str, replicas: int) -> None:
        """Like the StatefulSet controller at once: the pods above `replicas` start stopping."""
        self._write("scale_statefulset")
        if name in self.statefulsets:
            self.statefulsets[name]["spec"]["replicas"] = replicas
        self.terminating |= {
            p for p in self.pods if p.rsplit("-", 1)[0] == name and int(p.rsplit("-", 1)[1]) >= replicas
        }

    def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        self._write("annotate_pod")
        self.pod_patches.append((name, dict(annotations)))
        self.pod_annotations.setdefault(name, {}).update(annotations)

    def read_namespace(self, name: str) -> Mapping[str, str] | None:
        self._check("read_namespace")
        found = self.namespaces.get(name)
        return None if found is None else dict(found)

    def namespace_labels(self, name: str) -> Mapping[str, str] | None:
        self._check("namespace_labels")
        if name not in self.namespaces:
            return None
        return dict(self.labels.get(name, {}))

    def read_object(self, kind: Kind, namespace: str | None, name: str) -> Mapping[str, Any] | None:
        self._check("read_object")
        self.object_reads.append((kind.plural, namespace, name))
        found = self.objects.get((kind.plural, namespace, name))
        return None if found is None else dict(found)

    def service_account_exists(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self.service_accounts

    def apply_service_account(self, account: Mapping[str, Any]) -> None:
        self._write("apply_service_account")
        meta = account["metadata"]
        self.service_accounts[(meta["namespace"], meta["name"])] = dict(account)

    def apply_role_binding(self, binding: Mapping[str, Any]) -> None:
        self._write("apply_role_binding")
        meta = binding["metadata"]
        self.role_bindings[(meta["namespace"], meta["name"])] = dict(binding)

    def delete_role_binding(self, namespace: str, name: str) -> bool:
        self._write("delete_role_binding")
        return self.role_bindings.pop((namespace, name), None) is not None

    def apply_disruption_budget(self, budget: Mapping[str, Any]) -> None:
        self._write("apply_disruption_budget")
        self.disruption_budgets[budget["metadata"]["name"]] = dict(budget)

    def service_account_may(self, account: tuple[str, str], namespace: str, access: ResourceAccess) -> bool:
        self._check("service_account_may")
        return (namespace, access) in self.granted.get(account, set())

    def _status_of(self, kind: Kind) -> dict[str, Any]:
        """One object of each kind: a Runner's status in `status`, a DeployToken's in `deploy_token_status`, a
        connection's in `connection_status`."""
        if kind in CONNECTION_KINDS:
            return self.connection_status
        return self.status if kind == RUNNER else self.deploy_token_status

    def read_status(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        self._check("read_status")
        return dict(self._status_of(kind))

    def for_resync(self, body: Mapping[str, Any]) -> InMemoryKube:
        return self  # one store: nothing to cache

    def for_event(self, *, cached_children: bool = False) -> InMemoryKube:
        self.event_views.append(cached_children)
        return self

    def patch_status(self, kind: Kind, namespace: str | None, name: str, status: Mapping[str, Any]) -> None:
        """A JSON merge patch: None removes the field."""
        self._write("patch_status")
        self.status_writes.append(dict(status))
        stored = self._status_of(kind)
        for key, value in status.items():
            if value is None:
                stored.pop(key, None)
            else:
                stored[key] = value


# mypy checks that the stand-in is a Kubernetes port like the real adapter.
_PORT: type[KubePort] = InMemoryKube


class RecordingPool(GitLabPool):
    """The real pool; remembers which CA bundle each client was asked for (the CA paths are about exactly that)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, bool, str | None]] = []  # (api_url, with access token, CA)

    def client(self, api_url: str, access_token: str, ca_pem: str | None = None) -> GitLabClient:
        self.requests.append((api_url, bool(access_token), ca_pem))
        return super().client(api_url, access_token, ca_pem)


@dataclass
class Env:
    gitlab: FakeGitLab
    kube: InMemoryKube
    pool: RecordingPool
    spec: dict[str, Any]
    events: list[tuple[EventType, str, str]] = field(default_factory=list)
    ref: RunnerRef = field(default_factory=lambda: RunnerRef(NAMESPACE, "builds", UID))
    settings: RunnerSettings = DEFAULT_SETTINGS

    def emit(self, type_: EventType, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]

    def reconcile(self) -> ReconcileOutcome:
        ctx = open_context(self.kube, self.pool, self.ref, self.spec, self.emit, LOG, settings=self.settings)
        return reconcile(ctx)

    def delete(self, *, give_up_search: bool = False) -> None:
        policy = self.settings.connections
        delete_runner(
            self.kube, self.pool, self.ref, self.spec, self.emit, LOG, give_up_search=give_up_search, policy=policy
        )

    def use_token(self, token: str) -> None:
        self.kube.put_secret("gitlab-api", {"token": token})

    def token_secret(self) -> dict[str, Any]:
        return self.kube.secrets["builds-runner-token"]

    def runner_token(self) -> str:
        token: str = self.token_secret()["data"]["token"]
        return token

    def posts(self) -> int:
        return len([c for c in self.gitlab.calls if c.method == "POST" and c.path.endswith("/user/runners")])

    def resets(self) -> int:
        return len([c for c in self.gitlab.calls if c.path.endswith("/reset_authentication_token")])


@pytest.fixture(scope="session")
def gitlab_server() -> Iterator[FakeGitLab]:
    with FakeGitLab().running() as gl:
        yield gl


@pytest.fixture
def env(gitlab_server: FakeGitLab, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    gl = gitlab_server
    # The handlers' batch reads start empty in each test (the fake's runner ids start again after a reset).
    monkeypatch.setattr(handlers, "DIRECTORY", RunnerDirectory())
    # Every resync a test asks for runs (the pacing's own tests arrange a budget that stretches the interval).
    monkeypatch.setattr(runtime, "PACING", Pacing(0.0, 1.0, 10**9))
    gl.reset()
    if not hasattr(gl, "_seeded"):
        owner = gl.add_user("owner")
        gl.add_group(70, "platform", owners=[owner])
        gl.add_project(7, "web", group_id=70, maintainers=[owner])
        gl.add_access_token("glpat-api", owner, scopes=["api"])
        gl.add_access_token("glpat-admin", gl.add_user("admin", admin=True), scopes=["api"])
        # Enough to create, update, rotate and delete, not to list runners (no read_api).
        gl.add_access_token("glpat-both", owner, scopes=["create_runner", "manage_runner"])
        # Enough to create a runner, nothing else (GitLab refuses it the update, rotation and deletion: 403).
        gl.add_access_token("glpat-create-only", owner, scopes=["create_runner"])
        gl._seeded = True  # type: ignore[attr-defined]
    kube = InMemoryKube()
    pool = RecordingPool()
    spec = {
        "gitlab": {"url": gl.url, "credentialsSecretRef": {"name": "gitlab-api", "key": "token"}},
        "runnerType": "project_type",
        "projectId": 7,
        "description": "builds",
        "tags": ["docker"],
        "replicas": 1,
    }
    e = Env(gitlab=gl, kube=kube, pool=pool, spec=spec)
    e.use_token("glpat-api\n")
    try:
        yield e
    finally:
        pool.close()
    assert gl.internal_errors == []
