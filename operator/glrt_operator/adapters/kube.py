"""The Kubernetes adapter: the reads and writes the operator makes besides Kopf's own watching and patching.

Children are written with server-side apply (field manager `glrt-operator`), so re-applying an unchanged object
is a no-op and repeated reconciles never fight over fields.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import kubernetes
from kubernetes.client.exceptions import ApiException

FIELD_MANAGER = "glrt-operator"
GROUP, VERSION, PLURAL = "glrt.dev", "v1alpha1", "runners"
_APPLY = "application/apply-patch+yaml"
_MERGE = "application/merge-patch+json"
T = TypeVar("T")


def load_api_client() -> kubernetes.client.ApiClient:
    """The in-cluster service account, else the current kubeconfig (the same rule Kopf uses)."""
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    return kubernetes.client.ApiClient()


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
    """What Kubernetes refused, for a condition. The apiserver's own message is kept only for answers that
    name the resource and verb (403 names the missing RBAC rule); other bodies could quote submitted data."""
    text = f"Kubernetes answered {exc.status} {exc.reason}"
    if exc.status in (403, 404, 409):
        try:
            detail = json.loads(exc.body or "{}").get("message", "")
        except ValueError:
            detail = ""
        if detail:
            text += f": {str(detail)[:300]}"
    if exc.status == 403:
        text += ". Grant the operator's ServiceAccount this permission (see the Helm chart's RBAC)."
    return text


class Kube:
    def __init__(self, api: kubernetes.client.ApiClient):
        self._discovery = kubernetes.client.ApisApi(api)
        self._core = kubernetes.client.CoreV1Api(api)
        self._apps = kubernetes.client.AppsV1Api(api)
        self._custom = kubernetes.client.CustomObjectsApi(api)

    def runner_api_served(self) -> bool:
        """Is `glrt.dev/v1alpha1` served (the CRD installed)? Discovery needs no RBAC beyond being logged in."""
        groups = self._discovery.get_api_versions().groups or []
        return any(g.name == GROUP and any(v.version == VERSION for v in g.versions) for g in groups)

    # --- Secrets --------------------------------------------------------------------------------------------

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Secret's metadata annotations and decoded data, or None when it does not exist."""
        secret = _unless_missing(self._core.read_namespaced_secret, name, namespace)
        if secret is None:
            return None
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        meta = secret.metadata
        return {"annotations": dict((meta and meta.annotations) or {}), "data": data, "owners": _owner_uids(meta)}

    def read_secret_value(self, namespace: str, name: str, key: str) -> str | None:
        secret = self.read_secret(namespace, name)
        if secret is None:
            return None
        value: str | None = secret["data"].get(key)
        return value

    def apply_secret(self, secret: Mapping[str, Any]) -> None:
        meta = secret["metadata"]
        self._core.patch_namespaced_secret(
            meta["name"],
            meta["namespace"],
            dict(secret),
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=_APPLY,
        )

    # --- StatefulSet ----------------------------------------------------------------------------------------

    def apply_statefulset(self, statefulset: Mapping[str, Any]) -> None:
        meta = statefulset["metadata"]
        self._apps.patch_namespaced_stateful_set(
            meta["name"],
            meta["namespace"],
            dict(statefulset),
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=_APPLY,
        )

    def statefulset_owners(self, namespace: str, name: str) -> list[str] | None:
        """The owner uids of the StatefulSet, or None when it does not exist."""
        sts = _unless_missing(self._apps.read_namespaced_stateful_set, name, namespace)
        return None if sts is None else _owner_uids(sts.metadata)

    def ready_replicas(self, namespace: str, name: str) -> int:
        sts = _unless_missing(self._apps.read_namespaced_stateful_set_status, name, namespace)
        return int((sts and sts.status and sts.status.ready_replicas) or 0)

    def pod_exists(self, namespace: str, name: str) -> bool:
        return _unless_missing(self._core.read_namespaced_pod, name, namespace) is not None

    # --- the Runner's own status ----------------------------------------------------------------------------

    def read_runner_status(self, namespace: str, name: str) -> dict[str, Any]:
        """The Runner's status as stored now: handlers act on this, never on the snapshot of the event that woke
        them (another handler of the same Runner may have written since)."""
        body = self._custom.get_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name)
        return dict(cast(dict[str, Any], body).get("status") or {})

    def patch_runner_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Write status at once, outside Kopf's end-of-handler patch: for facts that must survive a crash."""
        self._custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": dict(status)}, _content_type=_MERGE
        )

    # === DeployToken (the deploytokens package) ==============================================================

    def read_deploy_token_status(self, namespace: str, name: str) -> dict[str, Any]:
        """The DeployToken's status as stored now (not the snapshot of the event that woke the handler)."""
        body = self._custom.get_namespaced_custom_object_status(GROUP, VERSION, namespace, DEPLOY_TOKENS, name)
        return dict(cast(dict[str, Any], body).get("status") or {})

    def patch_deploy_token_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Write status at once: the fences and token ids must survive a crash of the operator."""
        self._custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, DEPLOY_TOKENS, name, {"status": dict(status)}, _content_type=_MERGE
        )


DEPLOY_TOKENS = "deploytokens"
