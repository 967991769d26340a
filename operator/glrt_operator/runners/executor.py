"""What gitlab-runner's kubernetes executor needs in the cluster for a Runner's config (pure).

The executor creates each CI job's pod (and its Secrets) through the Kubernetes API with the manager pod's own
ServiceAccount, in `[runners.kubernetes] namespace`. Which permissions it needs there depends on the settings:
gitlab-runner documents them per setting ("Configure runner API permissions",
https://docs.gitlab.com/runner/executors/kubernetes/#configure-runner-api-permissions). The Helm chart ships one
ClusterRole per group of permissions (`<chart>-executor`, `-executor-pod-logs`, ...); the operator binds, in the
executor namespace, exactly the ones this Runner's settings need, and never holds those permissions itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .model import RunnerSpec

# The ClusterRoles of the chart, by suffix of the base name ("" is the base): each a group of the permissions the
# docs list per setting. The chart renders the same rules (helm/glrt-operator/templates/executor-rbac.yaml; a test
# compares them), and a user's own ServiceAccount is checked against them.
BASE = ""
POD_LOGS = (
    "pod-logs"  # pods/log get, list: FF_KUBERNETES_HONOR_ENTRYPOINT, FF_WAIT_FOR_POD_TO_BE_REACHABLE, FF_CONCRETE
)
POD_EVENTS = "pod-events"  # events watch: FF_PRINT_POD_EVENTS
DISRUPTION_BUDGETS = "disruption-budgets"  # policy/poddisruptionbudgets create, get: pod_disruption_budget
SUSPENDABLE = "suspendable"  # configmaps, persistentvolumeclaims: FF_SUSPENDABLE_ENVIRONMENTS
ROLE_GROUPS = (BASE, POD_LOGS, POD_EVENTS, DISRUPTION_BUDGETS, SUSPENDABLE)


@dataclass(frozen=True)
class Rule:
    api_group: str
    resource: str
    verbs: tuple[str, ...]


RULES: Mapping[str, tuple[Rule, ...]] = {
    # Default settings: the job pod (informers need list and watch), attaching to and executing in its containers,
    # the job's registry-credential Secrets, warning events of a failing pod (print_pod_warning_events defaults to
    # true), the service account and image pull Secret checks, and proxy Services for jobs with ports.
    BASE: (
        Rule("", "pods", ("create", "delete", "get", "list", "watch")),
        Rule("", "pods/attach", ("create", "delete", "get", "patch")),
        Rule("", "pods/exec", ("create", "delete", "get", "patch")),
        Rule("", "secrets", ("create", "delete", "get", "update")),
        Rule("", "events", ("list",)),
        Rule("", "serviceaccounts", ("get",)),
        Rule("", "services", ("create", "get")),
    ),
    POD_LOGS: (Rule("", "pods/log", ("get", "list")),),
    POD_EVENTS: (Rule("", "events", ("watch",)),),
    DISRUPTION_BUDGETS: (Rule("policy", "poddisruptionbudgets", ("create", "get")),),
    SUSPENDABLE: (
        Rule("", "configmaps", ("create", "delete", "get", "update")),
        Rule("", "persistentvolumeclaims", ("create", "delete")),
    ),
}

_BY_FEATURE_FLAG = {
    "FF_KUBERNETES_HONOR_ENTRYPOINT": POD_LOGS,
    "FF_WAIT_FOR_POD_TO_BE_REACHABLE": POD_LOGS,
    "FF_CONCRETE": POD_LOGS,
    "FF_PRINT_POD_EVENTS": POD_EVENTS,
    "FF_SUSPENDABLE_ENVIRONMENTS": SUSPENDABLE,
}


@dataclass(frozen=True)
class ExecutorAccess:
    """Where job pods run and which of the chart's permission groups the executor needs there. `unsupported`: a
    setting whose permissions a binding in one namespace cannot grant (the message says what to do instead)."""

    namespace: str
    role_groups: tuple[str, ...]
    unsupported: str | None = None


def _flag(flags: Mapping[str, Any], name: str) -> bool:
    value = flags.get(name)
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1"))


def executor_access(spec: RunnerSpec, runner_namespace: str) -> ExecutorAccess | None:
    """What the kubernetes executor needs for this spec; None when the Runner uses another executor (it needs
    nothing in the cluster)."""
    config = spec.config.effective()
    if config.get("executor", "kubernetes") != "kubernetes":
        return None
    kubernetes: Mapping[str, Any] = config.get("kubernetes") or {}
    namespace = str(kubernetes.get("namespace") or runner_namespace)
    # Feature flags come from [runners.feature_flags] or from the job environment (`FF_X=true`).
    flags: dict[str, Any] = dict(config.get("featureFlags") or {})
    for entry in config.get("environment") or ():
        name, _, value = str(entry).partition("=")
        flags.setdefault(name, value)
    groups = {BASE} | {group for flag, group in _BY_FEATURE_FLAG.items() if _flag(flags, flag)}
    if kubernetes.get("podDisruptionBudget") is True:
        groups.add(DISRUPTION_BUDGETS)
    unsupported = None
    if kubernetes.get("namespacePerJob") is True:
        unsupported = (
            "spec.config.kubernetes.namespacePerJob creates a namespace per job, which needs cluster-wide rights "
            "the operator does not grant: unset it, or run the managers as your own ServiceAccount "
            "(spec.manager.serviceAccountName) bound to a ClusterRole"
        )
    elif kubernetes.get("namespaceOverwriteAllowed"):
        unsupported = (
            "spec.config.kubernetes.namespaceOverwriteAllowed lets jobs choose their namespace, where the operator "
            "grants nothing: unset it, or run the managers as your own ServiceAccount (spec.manager.serviceAccountName)"
        )
    return ExecutorAccess(
        namespace=namespace, role_groups=tuple(g for g in ROLE_GROUPS if g in groups), unsupported=unsupported
    )


def cluster_role_name(base: str, group: str) -> str:
    """The chart's ClusterRole of one permission group: `<base>` or `<base>-<group>`."""
    return f"{base}-{group}" if group else base
