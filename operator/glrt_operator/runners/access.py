"""The executor's identity and permissions: what lets a Runner's manager pods create CI job pods.

By default the manager pods run as a ServiceAccount the operator creates for the Runner, and in the executor
namespace the operator binds exactly the chart's executor ClusterRoles this Runner's settings need (RoleBindings:
the operator may only `bind` those roles, it never holds their permissions). A binding in another namespace cannot
be owned by the Runner, so it is recorded in `status.executor` before it is made, and the deletion removes it. With
`spec.manager.serviceAccountName` the user brings their own ServiceAccount: the operator grants nothing and asks the
API server (LocalSubjectAccessReviews) whether it may do what the executor needs, saying what is missing.

Everything is checked before the runner is created in GitLab (`check`), so bad input leaves nothing half-made.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kubernetes.client.exceptions import ApiException

from ..core.applied import child_current, stamped
from ..core.errors import ReconcileError
from ..core.events import EventSink
from ..core.namespaces import check_target_namespace
from ..core.ports import ChildObject, KubePort, ResourceAccess
from ..core.reasons import EventReason, Reason
from ..core.refs import Logger
from . import builders
from .context import RunnerContext, RunnerRef
from .executor import RULES, ExecutorAccess, cluster_role_name, executor_access
from .registration import check_owned
from .status import ExecutorStatus, RunnerStatus

EXECUTOR_NAMESPACE_FIELD = "The executor namespace (spec.config.kubernetes.namespace)"
POD_POLL_SECONDS = 5.0


def needed(ctx: RunnerContext) -> ExecutorAccess | None:
    return executor_access(ctx.spec, ctx.ref.namespace)


def check(ctx: RunnerContext, access: ExecutorAccess | None) -> None:
    """Refuse, with what to fix, a Runner whose job pods could not run: before anything is created."""
    if access is None:
        return
    own = ctx.spec.manager.service_account_name
    if own:
        _check_own_account(ctx, own, access)
        return
    if access.unsupported:
        raise ReconcileError(Reason.EXECUTOR_UNSUPPORTED, access.unsupported, permanent=True)
    check_target_namespace(ctx.kube, ctx.settings.scope, access.namespace, ctx.ref.namespace, EXECUTOR_NAMESPACE_FIELD)
    for key in _bindings(ctx, access):
        _check_binding_ours(ctx, key)


def _bindings(ctx: RunnerContext, access: ExecutorAccess) -> dict[str, str]:
    """The RoleBindings this Runner's executor needs: "namespace/name" -> permission group."""
    return {
        f"{access.namespace}/{builders.role_binding_name(ctx.ref.namespace, ctx.ref.name, g)}": g
        for g in access.role_groups
    }


def _ours(binding: ChildObject, uid: str) -> bool:
    """A RoleBinding the operator made for the Runner of this uid (in another namespace no ownerReference can
    say so: the annotation does)."""
    return binding.annotations.get(builders.ANNOTATION_RUNNER_UID) == uid


def _check_binding_ours(ctx: RunnerContext, key: str) -> None:
    where, name = key.split("/", 1)
    _refuse_foreign_binding(ctx.kube.read_child("RoleBinding", where, name), where, name, ctx.ref.uid)


def _refuse_foreign_binding(found: ChildObject | None, where: str, name: str, uid: str) -> None:
    """Applying ours over a RoleBinding someone else made would take it over (and the deletion would remove it)."""
    if found is not None and not _ours(found, uid):
        raise ReconcileError(
            Reason.NAME_CONFLICT,
            f"RoleBinding {name!r} already exists in the executor namespace {where!r} and is not managed by this "
            f"Runner: delete or rename it (the operator names the executor's RoleBindings glrt.<namespace>.<runner>"
            "[.<group>]).",
        )


def _check_own_account(ctx: RunnerContext, account: str, access: ExecutorAccess) -> None:
    namespace = ctx.ref.namespace
    if not ctx.kube.service_account_exists(namespace, account):
        raise ReconcileError(
            Reason.SERVICE_ACCOUNT_MISSING,
            f"ServiceAccount {account!r} (spec.manager.serviceAccountName) does not exist in namespace "
            f"{namespace!r}: create it, or unset the field to let the operator create one.",
        )
    recorded = ctx.status.executor or {}
    if recorded.get("verifiedGeneration") == ctx.generation and recorded.get("namespace") == access.namespace:
        return  # asked the API server for this generation already
    missing = [
        f"{p.verb} {p.resource}{'/' + p.subresource if p.subresource else ''}"
        for p in permissions(access.role_groups)
        if not ctx.kube.service_account_may((namespace, account), access.namespace, p)
    ]
    if missing:
        raise ReconcileError(
            Reason.EXECUTOR_FORBIDDEN,
            f"ServiceAccount {account!r} may not {', '.join(missing)} in namespace {access.namespace!r}, which "
            "gitlab-runner's kubernetes executor needs for this Runner's settings: grant them (a Role and "
            "RoleBinding there), or unset spec.manager.serviceAccountName to let the operator do it.",
        )


def permissions(groups: Sequence[str]) -> list[ResourceAccess]:
    """Every verb the executor needs for these permission groups, one by one (as an access review asks)."""
    return [
        ResourceAccess(rule.api_group, *_split(rule.resource), verb)
        for group in groups
        for rule in RULES[group]
        for verb in rule.verbs
    ]


def _split(resource: str) -> tuple[str, str]:
    name, _, sub = resource.partition("/")
    return name, sub


def grant(ctx: RunnerContext, access: ExecutorAccess | None) -> None:
    """Make what `check` approved: the manager pods' PodDisruptionBudget, their ServiceAccount and its RoleBindings
    in the executor namespace (recorded before they are made), and remove bindings the Runner no longer needs."""
    names = ctx.ref.children
    owner, namespace = ctx.ref.owner(), ctx.ref.namespace
    budget = stamped(
        builders.build_disruption_budget(
            name=names.disruption_budget, namespace=namespace, owner=owner, runner_name=ctx.ref.name
        )
    )
    found = ctx.kube.read_child("PodDisruptionBudget", namespace, names.disruption_budget)
    # Checked before the runner was created too; again here for a Runner that existed before it was.
    check_owned(f"PodDisruptionBudget {names.disruption_budget!r}", None if found is None else found.owners, ctx.ref)
    if not child_current(budget, found):
        ctx.kube.apply_disruption_budget(budget)
    own = ctx.spec.manager.service_account_name
    wanted: dict[str, str] = {}  # "namespace/name" -> permission group
    if not own:  # the manager pods run as it whatever the executor: without RBAC when it needs none
        account = stamped(
            builders.build_service_account(
                name=names.service_account, namespace=namespace, owner=owner, runner_name=ctx.ref.name
            )
        )
        found = ctx.kube.read_child("ServiceAccount", namespace, names.service_account)
        check_owned(f"ServiceAccount {names.service_account!r}", None if found is None else found.owners, ctx.ref)
        if not child_current(account, found):
            ctx.kube.apply_service_account(account)
    if access is not None and not own:
        wanted = _bindings(ctx, access)
    recorded = set((ctx.status.executor or {}).get("roleBindings", ()))
    entry: ExecutorStatus = {"serviceAccount": own or names.service_account}
    if access is not None:
        entry["namespace"] = access.namespace
    if own and access is not None:
        entry["verifiedGeneration"] = ctx.generation or 0
    _record(ctx, entry, recorded | set(wanted))  # first: a crash never leaves a binding the deletion does not know
    for key, group in sorted(wanted.items()):
        where, name = key.split("/", 1)
        role = cluster_role_name(ctx.settings.executor_role, group)
        binding = stamped(
            builders.build_role_binding(
                name=name,
                namespace=where,
                cluster_role=role,
                service_account=names.service_account,
                service_account_namespace=namespace,
                runner_name=ctx.ref.name,
                runner_uid=ctx.ref.uid,
            )
        )
        found = ctx.kube.read_child("RoleBinding", where, name)
        _refuse_foreign_binding(found, where, name, ctx.ref.uid)
        if not child_current(binding, found):
            ctx.kube.apply_role_binding(binding)
    revoke(ctx.kube, recorded - set(wanted), ctx.ref.uid, ctx.emit, ctx.log)
    _record(ctx, entry, set(wanted))
    if access is not None and wanted and not recorded >= set(wanted):
        roles = ", ".join(cluster_role_name(ctx.settings.executor_role, g) for g in access.role_groups)
        ctx.log.info("job pods run in namespace %s as %s (%s)", access.namespace, names.service_account, roles)


def _record(ctx: RunnerContext, entry: ExecutorStatus, bindings: set[str]) -> None:
    wanted = ExecutorStatus(**entry)
    if bindings:
        wanted["roleBindings"] = sorted(bindings)
    if wanted != (ctx.status.executor or {}):
        ctx.record(executor=wanted)


def revoke(kube: KubePort, bindings: Iterable[str], uid: str, emit: EventSink, log: Logger) -> None:
    """Delete these RoleBindings (`namespace/name`) of the Runner of this uid; one already gone counts as done. A
    binding of that name that is not this Runner's (status.executor may be edited by whoever can patch the status)
    is left, with a Warning."""
    for key in sorted(bindings):
        where, name = key.split("/", 1)
        found = kube.read_child("RoleBinding", where, name)
        if found is None:
            continue
        if not _ours(found, uid):
            message = (
                f"RoleBinding {name} in namespace {where} is named in status.executor but is not this Runner's: "
                "left in place"
            )
            emit("Warning", EventReason.EXECUTOR_ACCESS_LEFT, message)
            log.warning("%s", message)
            continue
        if kube.delete_role_binding(where, name):
            log.info("removed RoleBinding %s in namespace %s", name, where)


def release_on_delete(kube: KubePort, ref: RunnerRef, status: RunnerStatus, emit: EventSink, log: Logger) -> None:
    """The deleted Runner's RoleBindings go (in another namespace no owner reference reaches them), once its
    manager pods are gone: until then they may still run jobs, which need them. The pods are scaled away (each
    drains its running jobs first). A binding the operator may no longer delete (a namespace it stopped serving) is
    left with a Warning rather than holding the deletion."""
    bindings = (status.executor or {}).get("roleBindings", ())
    if not bindings:
        return
    if kube.list_pods(ref.namespace, f"{builders.LABEL_RUNNER}={ref.name}"):
        kube.scale_statefulset(ref.namespace, ref.children.statefulset, 0)
        raise ReconcileError(
            Reason.WAITING_FOR_PODS,
            "Waiting for the manager pods to stop (each finishes its running jobs first, at most "
            "spec.manager.drainTimeout) before removing their access to the executor namespace",
            delay=POD_POLL_SECONDS,
            transient=True,
        )
    for key in bindings:
        try:
            revoke(kube, [key], ref.uid, emit, log)
        except ApiException as exc:
            if exc.status != 403:
                raise
            message = f"RoleBinding {key} could not be deleted (the operator may no longer act there): delete it"
            emit("Warning", EventReason.EXECUTOR_ACCESS_LEFT, message)
            log.warning("%s", message)
