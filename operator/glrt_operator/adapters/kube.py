"""The Kubernetes adapter: the reads and writes the operator makes besides Kopf's own watching and patching.

Children are written with server-side apply (field manager `glrt-operator`), so re-applying an unchanged object
is a no-op and repeated reconciles never fight over fields.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from ..core.api import GROUP, VERSION, Kind
from ..core.errors import ReconcileError, redact, register_classifier
from ..core.ports import ChildObject, PodInfo, ResourceAccess, SecretObject
from ..core.reasons import Reason
from .kube_cache import CachedReads, secret_object, selector_labels

FIELD_MANAGER = "glrt-operator"
_APPLY = "application/apply-patch+yaml"
_MERGE = "application/merge-patch+json"
T = TypeVar("T")


def _unless_missing(read: Callable[[str, str], T], name: str, namespace: str) -> T | None:
    """A read by name; None when the object does not exist (404)."""
    try:
        return read(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _owner_uids(meta: kubernetes.client.V1ObjectMeta | None) -> list[str]:
    return [ref.uid for ref in (meta.owner_references or [])] if meta else []


def describe_api_error(exc: ApiException) -> str:
    """What Kubernetes refused, for a condition, quoting the apiserver's own message (a 422 names the field and
    the rule, a 403 the missing RBAC rule). The operator never sends a secret where the apiserver would quote it
    back (Secret data is never echoed), and anything token-shaped is redacted all the same."""
    text = f"Kubernetes answered {exc.status} {exc.reason}"
    try:
        body = json.loads(exc.body or "{}")
        detail = body.get("message", "") if isinstance(body, dict) else ""
    except ValueError:
        detail = ""
    if detail:
        text += f": {redact(str(detail))[:500]}"
    if exc.status == 403:
        text += ". Grant the operator's ServiceAccount this permission (see the Helm chart's RBAC)."
    elif exc.status == 422:
        text += ". Fix the Runner field this value comes from (often metadata.name: objects are named after it)."
    return text


@register_classifier
def classify_kube_error(exc: BaseException) -> ReconcileError | None:
    """Kubernetes API failures: the apiserver's answer, or the apiserver unreachable."""
    if isinstance(exc, ApiException):
        status = exc.status or 0
        # 422: the object built from this Runner is invalid; retrying cannot help until the Runner is edited.
        return ReconcileError(
            Reason.KUBERNETES_API_ERROR,
            describe_api_error(exc),
            permanent=status == 422,
            transient=status >= 500 or status in (0, 409, 429),
        )
    if isinstance(exc, urllib3.exceptions.HTTPError):
        return ReconcileError(
            Reason.KUBERNETES_UNREACHABLE,
            f"The Kubernetes API server is unreachable ({type(exc).__name__}); retrying.",
            transient=True,
        )
    return None


class Kube(CachedReads):
    """The Kubernetes API as the use cases need it (`core.ports.KubePort`).

    With `start_caches`, `for_resync` gives a view for resyncs that reads the children from watch caches, Secrets
    from what was last read or written, and the resynced object's status from Kopf's live body (`adapters.
    kube_cache`); the view every event handler gets always reads the API server."""

    def __init__(self, api: kubernetes.client.ApiClient):
        super().__init__(api)
        self._discovery = kubernetes.client.ApisApi(api)
        self._core = kubernetes.client.CoreV1Api(api)
        self._apps = kubernetes.client.AppsV1Api(api)
        self._custom = kubernetes.client.CustomObjectsApi(api)
        self._rbac = kubernetes.client.RbacAuthorizationV1Api(api)
        self._policy = kubernetes.client.PolicyV1Api(api)
        self._authorization = kubernetes.client.AuthorizationV1Api(api)

    def api_served(self) -> bool:
        """Is the operator's group and version served (the CRDs installed)? Discovery needs no RBAC beyond being
        logged in."""
        groups = self._discovery.get_api_versions().groups or []
        return any(g.name == GROUP and any(v.version == VERSION for v in g.versions) for g in groups)

    # --- Secrets --------------------------------------------------------------------------------------------

    def read_secret(self, namespace: str, name: str) -> SecretObject | None:
        """The Secret with its data decoded, or None when it does not exist."""
        if (remembered := self._recall("Secret", namespace, name))[0]:
            return cast(SecretObject | None, remembered[1])
        if self._cached and self._memory is not None:
            fresh, known = self._memory.recall(namespace, name)
            if fresh:
                return self._note("Secret", namespace, name, known)
        secret = _unless_missing(self._core.read_namespaced_secret, name, namespace)
        found = None if secret is None else secret_object(secret, name)
        if self._memory is not None:
            self._memory.remember(namespace, name, found)
        return self._note("Secret", namespace, name, found)

    def apply_secret(self, secret: Mapping[str, Any]) -> str:
        """Server-side apply; returns the Secret's resourceVersion (unchanged when the apply changed nothing)."""
        meta = secret["metadata"]
        applied = self._core.patch_namespaced_secret(
            meta["name"],
            meta["namespace"],
            dict(secret),
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=_APPLY,
        )
        written = secret_object(applied, meta["name"])
        self._note("Secret", meta["namespace"], meta["name"], written)
        if self._memory is not None:
            self._memory.remember(meta["namespace"], meta["name"], written)
        return str(applied.metadata.resource_version) if applied.metadata else ""

    def delete_secret(self, namespace: str, name: str) -> bool:
        """False when it was already gone. Only for Secrets the operator wrote where no owner reference reaches."""
        self._forget("Secret", namespace, name)
        try:
            self._core.delete_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # --- StatefulSet ----------------------------------------------------------------------------------------

    def apply_statefulset(self, statefulset: Mapping[str, Any]) -> None:
        self._forget("StatefulSet", statefulset["metadata"]["namespace"], statefulset["metadata"]["name"])
        self._apply_statefulset(statefulset)

    def dry_run_statefulset(self, statefulset: Mapping[str, Any]) -> None:
        """Validate the StatefulSet as `apply_statefulset` would write it, writing nothing (ApiException 422 when the
        apiserver refuses it)."""
        self._apply_statefulset(statefulset, dry_run="All")

    def _apply_statefulset(self, statefulset: Mapping[str, Any], **options: Any) -> None:
        meta = statefulset["metadata"]
        self._apps.patch_namespaced_stateful_set(
            meta["name"],
            meta["namespace"],
            dict(statefulset),
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=_APPLY,
            **options,
        )

    def read_child(self, kind: str, namespace: str, name: str) -> ChildObject | None:
        """A StatefulSet (read through its status subresource, which returns the whole object: its metadata and its
        ready replicas in one GET), ServiceAccount or PodDisruptionBudget; None when it does not exist."""
        known, cached = self._cached_child(kind, namespace, name)
        if known and cached is not None:
            return cast(ChildObject, cached)
        if (remembered := self._recall(kind, namespace, name))[0]:
            return cast(ChildObject | None, remembered[1])
        return self._note(kind, namespace, name, self._read_child(kind, namespace, name))

    def _read_child(self, kind: str, namespace: str, name: str) -> ChildObject | None:
        # A cache miss is read: the watches see only objects with the operator's label, and one of that name someone
        # else made must be seen (applying over it would adopt it). At rest every child exists: no read.
        read: Callable[[str, str], Any] = {
            "StatefulSet": self._apps.read_namespaced_stateful_set_status,
            "ServiceAccount": self._core.read_namespaced_service_account,
            "PodDisruptionBudget": self._policy.read_namespaced_pod_disruption_budget,
            "RoleBinding": self._rbac.read_namespaced_role_binding,
        }[kind]
        found = _unless_missing(read, name, namespace)
        if found is None:
            return None
        meta = found.metadata
        status = getattr(found, "status", None)
        return ChildObject(
            annotations=dict((meta and meta.annotations) or {}),
            owners=tuple(_owner_uids(meta)),
            ready_replicas=int(getattr(status, "ready_replicas", 0) or 0) if kind == "StatefulSet" else 0,
        )

    def statefulset_owners(self, namespace: str, name: str) -> list[str] | None:
        """The owner uids of the StatefulSet, or None when it does not exist."""
        known, cached = self._cached_child("StatefulSet", namespace, name)
        if not known:
            cached = self.read_child("StatefulSet", namespace, name)
        return None if cached is None else list(cached.owners)

    def ready_replicas(self, namespace: str, name: str) -> int:
        known, cached = self._cached_child("StatefulSet", namespace, name)
        if not known:
            cached = self.read_child("StatefulSet", namespace, name)
        return 0 if cached is None else int(cached.ready_replicas)

    def pod_exists(self, namespace: str, name: str) -> bool:
        known, cached = self._cached_child("Pod", namespace, name)
        if known:
            return cached is not None
        return _unless_missing(self._core.read_namespaced_pod, name, namespace) is not None

    def list_pods(self, namespace: str, label_selector: str) -> list[PodInfo]:
        informer, labels = self._informer("Pod", namespace), selector_labels(label_selector)
        if informer is not None and labels is not None:
            known, pods = informer.select(namespace, labels)
            if known:
                return cast(list[PodInfo], pods)
        pods = self._core.list_namespaced_pod(namespace, label_selector=label_selector).items
        return [
            PodInfo(
                name=str(meta.name),
                terminating=meta.deletion_timestamp is not None,
                annotations=dict(meta.annotations or {}),
            )
            for p in pods
            if (meta := p.metadata) is not None
        ]

    def scale_statefulset(self, namespace: str, name: str, replicas: int) -> None:
        """Set the StatefulSet's replicas (its pods stop through their preStop drain); gone counts as done."""
        self._forget("StatefulSet", namespace, name)
        try:
            self._apps.patch_namespaced_stateful_set(
                name, namespace, {"spec": {"replicas": replicas}}, _content_type=_MERGE
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        """Merge-patch the pod's annotations: an update of the pod object, on which the kubelet refreshes the
        pod's Secret volumes at once instead of at its next periodic sync."""
        self._core.patch_namespaced_pod(
            name, namespace, {"metadata": {"annotations": dict(annotations)}}, _content_type=_MERGE
        )

    # --- what the manager pods need to run jobs -------------------------------------------------------------

    def read_namespace(self, name: str) -> Mapping[str, str] | None:
        """A namespace's annotations (where its owner says whom it accepts); None when it does not exist."""
        meta = self._namespace_metadata(name)
        return None if meta is None else dict(meta.annotations or {})

    def namespace_labels(self, name: str) -> Mapping[str, str] | None:
        """A namespace's labels (what a ClusterGitLabConnection's selector matches); None when it does not exist."""
        meta = self._namespace_metadata(name)
        return None if meta is None else dict(meta.labels or {})

    def _namespace_metadata(self, name: str) -> Any:
        try:
            namespace = self._core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return namespace.metadata or kubernetes.client.V1ObjectMeta()

    def read_object(self, kind: Kind, namespace: str | None, name: str) -> Mapping[str, Any] | None:
        """One of the operator's own objects (a connection a resource names); `namespace` None: cluster-scoped."""
        try:
            if namespace is None:
                body = self._custom.get_cluster_custom_object(GROUP, VERSION, kind.plural, name)
            else:
                body = self._custom.get_namespaced_custom_object(GROUP, VERSION, namespace, kind.plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return cast(dict[str, Any], body)

    def service_account_exists(self, namespace: str, name: str) -> bool:
        return self.read_child("ServiceAccount", namespace, name) is not None

    def apply_service_account(self, account: Mapping[str, Any]) -> None:
        meta = account["metadata"]
        self._forget("ServiceAccount", meta["namespace"], meta["name"])
        self._core.patch_namespaced_service_account(
            meta["name"],
            meta["namespace"],
            dict(account),
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=_APPLY,
        )

    def apply_role_binding(self, binding: Mapping[str, Any]) -> None:
        meta = binding["metadata"]
        self._forget("RoleBinding", meta["namespace"], meta["name"])
        self._rbac.patch_namespaced_role_binding(
            meta["name"],
            meta["namespace"],
            dict(binding),
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=_APPLY,
        )

    def delete_role_binding(self, namespace: str, name: str) -> bool:
        """False when it was already gone."""
        self._forget("RoleBinding", namespace, name)
        try:
            self._rbac.delete_namespaced_role_binding(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def apply_disruption_budget(self, budget: Mapping[str, Any]) -> None:
        meta = budget["metadata"]
        self._forget("PodDisruptionBudget", meta["namespace"], meta["name"])
        self._policy.patch_namespaced_pod_disruption_budget(
            meta["name"], meta["namespace"], dict(budget), field_manager=FIELD_MANAGER, force=True, _content_type=_APPLY
        )

    def service_account_may(self, account: tuple[str, str], namespace: str, access: ResourceAccess) -> bool:
        """May the ServiceAccount (namespace, name) do this in `namespace`? A LocalSubjectAccessReview: the API
        server's own answer, with the groups every ServiceAccount is in (bindings to groups count)."""
        sa_namespace, sa_name = account
        review: dict[str, Any] = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "LocalSubjectAccessReview",
            "metadata": {"namespace": namespace},
            "spec": {
                "user": f"system:serviceaccount:{sa_namespace}:{sa_name}",
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{sa_namespace}", "system:authenticated"],
                "resourceAttributes": {
                    "namespace": namespace,
                    "group": access.api_group,
                    "resource": access.resource,
                    "subresource": access.subresource,
                    "verb": access.verb,
                },
            },
        }
        answer = self._authorization.create_namespaced_local_subject_access_review(namespace, cast(Any, review))
        return bool(answer.status and answer.status.allowed)

    # --- the status of the operator's own resources --------------------------------------------------------

    def read_status(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        """The object's status as stored now: handlers act on this, never on the snapshot of the event that woke
        them (another handler of the same object may have written since). `namespace` None: cluster-scoped.
        A resync's view answers for its own object from Kopf's live body: the watch keeps it current, and every
        write of this process goes through Kopf or this adapter under the object's lock."""
        if (patched := self._recall(f"{kind.plural}/status", namespace or "", name))[0]:
            return copy.deepcopy(dict(patched[1]))
        meta = (self._body or {}).get("metadata") or {}
        mine = (self._body or {}).get("kind") == kind.kind and meta.get("name") == name
        if self._cached and mine and meta.get("namespace") == namespace:
            return copy.deepcopy(dict((self._body or {}).get("status") or {}))
        if namespace is None:
            body = self._custom.get_cluster_custom_object_status(GROUP, VERSION, kind.plural, name)
        else:
            body = self._custom.get_namespaced_custom_object_status(GROUP, VERSION, namespace, kind.plural, name)
        return dict(cast(dict[str, Any], body).get("status") or {})

    def patch_status(self, kind: Kind, namespace: str | None, name: str, status: Mapping[str, Any]) -> None:
        """Write status at once, outside Kopf's end-of-handler patch: for facts that must survive a crash (the fences
        around non-idempotent GitLab calls) and for handlers Kopf does not patch for (daemons)."""
        patch, custom = {"status": dict(status)}, self._custom
        body = (
            custom.patch_cluster_custom_object_status(GROUP, VERSION, kind.plural, name, patch, _content_type=_MERGE)
            if namespace is None
            else custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, kind.plural, name, patch, _content_type=_MERGE
            )
        )
        # The object as patched: this view's next `read_status` of it needs no GET.
        self._note(f"{kind.plural}/status", namespace or "", name, dict(cast(dict[str, Any], body).get("status") or {}))
