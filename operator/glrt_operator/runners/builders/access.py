"""What lets a `Runner`'s manager pods run CI jobs and keeps them available (pure): their ServiceAccount, the
RoleBindings of the chart's executor ClusterRoles in the executor namespace, and a PodDisruptionBudget."""

from __future__ import annotations

from typing import Any

from ...core.api import PREFIX
from ...core.objects import labels_of
from .common import LABEL_RUNNER, child_metadata, selector_labels

# On RoleBindings in the executor namespace, which may be another namespace than the Runner's: no owner reference
# can reach across namespaces, so these say whose binding it is (the Runner's finalizer deletes it).
LABEL_RUNNER_NAMESPACE = f"{PREFIX}runner-namespace"
ANNOTATION_RUNNER_UID = f"{PREFIX}runner-uid"


def role_binding_name(runner_namespace: str, runner_name: str, group: str) -> str:
    """A RoleBinding name unique per Runner and permission group in any namespace (a DNS subdomain)."""
    return ".".join(part for part in ("glrt", runner_namespace, runner_name, group) if part)


def build_service_account(*, name: str, namespace: str, owner: dict[str, Any], runner_name: str) -> dict[str, Any]:
    """The manager pods' identity: what the executor's RoleBindings grant to."""
    # The kubernetes executor uses this account's token to create job pods: it is mounted, as for any pod.
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": child_metadata(name, namespace, owner, runner_name),
        "automountServiceAccountToken": True,
    }


def build_role_binding(
    *,
    name: str,
    namespace: str,
    cluster_role: str,
    service_account: str,
    service_account_namespace: str,
    runner_name: str,
    runner_uid: str,
) -> dict[str, Any]:
    """Binds one of the chart's executor ClusterRoles, in the executor namespace only, to the manager pods'
    ServiceAccount."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                **labels_of("gitlab-runner", runner_name, LABEL_RUNNER),
                LABEL_RUNNER_NAMESPACE: service_account_namespace,
            },
            "annotations": {ANNOTATION_RUNNER_UID: runner_uid},
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": service_account_namespace}],
    }


def build_disruption_budget(*, name: str, namespace: str, owner: dict[str, Any], runner_name: str) -> dict[str, Any]:
    """At most one manager pod evicted at a time (a node drain, a cluster upgrade): every pod still drains its jobs
    when it stops, and the others keep taking jobs meanwhile."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": child_metadata(name, namespace, owner, runner_name),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(runner_name)}},
    }
