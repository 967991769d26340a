"""The executor's identity and permissions: the ServiceAccount, the RoleBindings of the chart's executor roles in the
executor namespace, the PodDisruptionBudget; every refusal before anything is created; deletion after the pods."""

from __future__ import annotations

from typing import Any

import pytest

from glrt_operator.core.errors import ReconcileError
from glrt_operator.core.namespaces import Scope
from glrt_operator.core.ports import ResourceAccess
from glrt_operator.runners.access import permissions
from glrt_operator.runners.context import RunnerSettings
from glrt_operator.runners.executor import BASE, POD_EVENTS
from glrt_operator.runners.reconcile import ReconcileOutcome, open_context, reconcile

from .conftest import LOG, NAMESPACE, Env

BINDING = "glrt.ci.builds"


def run(env: Env, settings: RunnerSettings | None = None, generation: int = 1) -> ReconcileOutcome:
    ctx = open_context(
        env.kube,
        env.pool,
        env.ref,
        env.spec,
        env.emit,
        LOG,
        settings=settings or RunnerSettings(),
        generation=generation,  # type: ignore[arg-type]
    )
    return reconcile(ctx)


def refused(env: Env, settings: RunnerSettings | None = None) -> ReconcileError:
    with pytest.raises(ReconcileError) as caught:
        run(env, settings)
    return caught.value


def nothing_made(env: Env) -> None:
    """Nothing in GitLab and nothing in the cluster but what the user made (their own ServiceAccount)."""
    assert env.posts() == 0 and not env.kube.role_bindings
    assert not env.kube.service_accounts.keys() - {(NAMESPACE, "team-ci")}
    assert "builds" not in env.kube.statefulsets


def jobs_in(env: Env, namespace: str, **extra: Any) -> None:
    env.spec["config"] = {"kubernetes": {"namespace": namespace, **extra}}


def test_the_manager_pods_get_their_own_account_bound_to_the_executor_role_where_jobs_run(env: Env) -> None:
    run(env)
    assert set(env.kube.service_accounts) == {(NAMESPACE, "builds-runner")}
    binding = env.kube.role_bindings[(NAMESPACE, BINDING)]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "glrt-operator-executor",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "builds-runner", "namespace": NAMESPACE}]
    pod = env.kube.statefulsets["builds"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "builds-runner"
    assert env.kube.disruption_budgets["builds"]["spec"]["maxUnavailable"] == 1
    assert env.kube.status["executor"] == {
        "namespace": NAMESPACE,
        "serviceAccount": "builds-runner",
        "roleBindings": [f"{NAMESPACE}/{BINDING}"],
    }


def test_an_executor_namespace_that_does_not_exist_refuses_before_anything_is_made(env: Env) -> None:
    jobs_in(env, "ci-jobs")
    exc = refused(env)
    assert (
        exc.reason == "NamespaceMissing"
        and "'ci-jobs'" in exc.message
        and "spec.config.kubernetes.namespace" in exc.message
    )
    nothing_made(env)


def test_another_namespace_must_accept_the_runners_namespace(env: Env) -> None:
    jobs_in(env, "ci-jobs")
    env.kube.namespaces["ci-jobs"] = {"glrt.dev/accept-from": "team-b"}
    exc = refused(env)
    assert exc.reason == "NamespaceNotAccepting"
    assert "kubectl annotate namespace ci-jobs glrt.dev/accept-from=ci" in exc.message
    nothing_made(env)
    env.kube.namespaces["ci-jobs"] = {"glrt.dev/accept-from": "team-b, ci"}
    run(env)
    assert set(env.kube.role_bindings) == {("ci-jobs", BINDING)}
    assert env.kube.role_bindings[("ci-jobs", BINDING)]["subjects"][0]["namespace"] == NAMESPACE


def test_in_the_namespaced_mode_the_executor_namespace_must_be_served(env: Env) -> None:
    jobs_in(env, "ci-jobs")
    env.kube.namespaces["ci-jobs"] = {"glrt.dev/accept-from": "*"}
    exc = refused(env, RunnerSettings(scope=Scope.of(["ci"])))
    assert exc.reason == "NamespaceNotWatched" and "'ci-jobs'" in exc.message and "watch.namespaces" in exc.message
    nothing_made(env)
    run(env, RunnerSettings(scope=Scope.of(["ci", "ci-jobs"])))
    assert ("ci-jobs", BINDING) in env.kube.role_bindings


def test_a_feature_flag_that_needs_more_binds_exactly_that_group_too(env: Env) -> None:
    env.spec["config"] = {"featureFlags": {"FF_PRINT_POD_EVENTS": True}}
    run(env)
    roles = sorted(b["roleRef"]["name"] for b in env.kube.role_bindings.values())
    assert roles == ["glrt-operator-executor", "glrt-operator-executor-pod-events"]
    env.spec["config"] = {}
    run(env)  # the flag is gone: so is its binding
    assert [b["roleRef"]["name"] for b in env.kube.role_bindings.values()] == ["glrt-operator-executor"]
    assert env.kube.status["executor"]["roleBindings"] == [f"{NAMESPACE}/{BINDING}"]


def test_moving_the_executor_namespace_moves_the_binding(env: Env) -> None:
    run(env)
    env.kube.namespaces["ci-jobs"] = {"glrt.dev/accept-from": "ci"}
    jobs_in(env, "ci-jobs")
    run(env)
    assert set(env.kube.role_bindings) == {("ci-jobs", BINDING)}
    assert env.kube.status["executor"]["roleBindings"] == [f"ci-jobs/{BINDING}"]


def test_settings_that_need_rights_in_unknown_namespaces_are_refused(env: Env) -> None:
    jobs_in(env, NAMESPACE, namespacePerJob=True)
    exc = refused(env)
    assert exc.reason == "ExecutorUnsupported" and exc.permanent and "serviceAccountName" in exc.message
    nothing_made(env)


def test_a_users_own_account_is_checked_not_bound(env: Env) -> None:
    env.spec["manager"] = {"serviceAccountName": "team-ci"}
    exc = refused(env)
    assert exc.reason == "ServiceAccountMissing" and "'team-ci'" in exc.message
    env.kube.service_accounts[(NAMESPACE, "team-ci")] = {}
    grants = {(NAMESPACE, p) for p in permissions([BASE])}
    env.kube.granted[(NAMESPACE, "team-ci")] = grants - {(NAMESPACE, ResourceAccess("", "pods", "exec", "create"))}
    exc = refused(env)
    assert exc.reason == "ExecutorForbidden" and "may not create pods/exec in namespace 'ci'" in exc.message
    nothing_made(env)
    env.kube.granted[(NAMESPACE, "team-ci")] = grants
    run(env, generation=4)
    assert not env.kube.role_bindings and not env.kube.service_accounts.keys() - {(NAMESPACE, "team-ci")}
    assert env.kube.statefulsets["builds"]["spec"]["template"]["spec"]["serviceAccountName"] == "team-ci"
    assert env.kube.status["executor"] == {"namespace": NAMESPACE, "serviceAccount": "team-ci", "verifiedGeneration": 4}
    env.kube.granted.clear()  # the same generation is not asked again at every resync
    run(env, generation=4)
    assert refused_at_generation(env, 5).reason == "ExecutorForbidden"


def refused_at_generation(env: Env, generation: int) -> ReconcileError:
    with pytest.raises(ReconcileError) as caught:
        run(env, generation=generation)
    return caught.value


def test_every_permission_group_asks_each_verb(env: Env) -> None:
    asked = permissions([BASE, POD_EVENTS])
    assert (
        ResourceAccess("", "pods", "attach", "create") in asked and ResourceAccess("", "events", "", "watch") in asked
    )
    assert len(asked) == len(set(asked)) == 22


def test_deletion_waits_for_the_pods_then_removes_the_binding(env: Env) -> None:
    env.kube.namespaces["ci-jobs"] = {"glrt.dev/accept-from": "ci"}
    jobs_in(env, "ci-jobs")
    run(env)
    env.kube.pods = {"builds-0"}
    with pytest.raises(ReconcileError) as caught:
        env.delete()
    assert caught.value.reason == "WaitingForPods" and caught.value.delay == 5.0
    assert env.gitlab.runner(env.kube.status["runnerId"]) is None  # gone from GitLab first
    assert "builds-0" in env.kube.terminating and ("ci-jobs", BINDING) in env.kube.role_bindings
    deletes = len([c for c in env.gitlab.calls if c.method == "DELETE"])
    env.kube.pods.clear()
    env.delete()
    assert not env.kube.role_bindings
    assert len([c for c in env.gitlab.calls if c.method == "DELETE"]) == deletes  # GitLab is not asked again


def test_another_executor_needs_nothing_in_the_cluster(env: Env) -> None:
    env.spec["config"] = {"executor": "shell"}
    run(env)
    assert not env.kube.role_bindings and "namespace" not in env.kube.status["executor"]
    assert "builds" in env.kube.disruption_budgets
    # The manager pods still run as the Runner's own ServiceAccount (the StatefulSet names it), bound to nothing
    assert set(env.kube.service_accounts) == {(NAMESPACE, "builds-runner")}
    assert env.kube.statefulsets["builds"]["spec"]["template"]["spec"]["serviceAccountName"] == "builds-runner"


def users_object(name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
    """An object someone else made: no ownerReference, none of the operator's labels or annotations."""
    return {"metadata": {"name": name, "namespace": namespace, "labels": {"team": "mine"}}}


@pytest.mark.parametrize(
    ("kind", "place"),
    [("ServiceAccount 'builds-runner'", "service_accounts"), ("PodDisruptionBudget 'builds'", "disruption_budgets")],
)
def test_a_users_account_or_budget_of_the_childs_name_is_refused_not_adopted(env: Env, kind: str, place: str) -> None:
    key: Any = (NAMESPACE, "builds-runner") if place == "service_accounts" else "builds"
    getattr(env.kube, place)[key] = users_object("builds-runner" if place == "service_accounts" else "builds")
    exc = refused(env)
    assert exc.reason == "NameConflict" and kind in exc.message and "delete or rename it" in exc.message
    assert getattr(env.kube, place)[key] == users_object(key[1] if isinstance(key, tuple) else key)  # untouched
    assert env.posts() == 0 and not env.kube.role_bindings and "builds" not in env.kube.statefulsets
    assert not {"apply_service_account", "apply_disruption_budget"} & set(env.kube.writes)


def test_a_runner_made_before_the_check_still_does_not_adopt_a_users_account(env: Env) -> None:
    run(env)
    env.kube.service_accounts[(NAMESPACE, "builds-runner")] = users_object("builds-runner")  # replaced by a user's
    applies = env.kube.writes.count("apply_service_account")
    exc = refused(env)
    assert exc.reason == "NameConflict" and "ServiceAccount 'builds-runner'" in exc.message
    assert env.kube.writes.count("apply_service_account") == applies
    assert env.kube.service_accounts[(NAMESPACE, "builds-runner")] == users_object("builds-runner")


def test_a_users_own_account_of_that_name_is_not_a_conflict(env: Env) -> None:
    env.spec["manager"] = {"serviceAccountName": "builds-runner"}
    env.kube.service_accounts[(NAMESPACE, "builds-runner")] = users_object("builds-runner")
    env.kube.granted[(NAMESPACE, "builds-runner")] = {(NAMESPACE, p) for p in permissions([BASE])}
    run(env)
    assert env.kube.service_accounts[(NAMESPACE, "builds-runner")] == users_object("builds-runner")


def test_a_users_role_binding_of_the_bindings_name_in_the_executor_namespace_is_refused(env: Env) -> None:
    env.kube.namespaces["ci-jobs"] = {"glrt.dev/accept-from": "ci"}
    jobs_in(env, "ci-jobs")
    env.kube.role_bindings[("ci-jobs", BINDING)] = users_object(BINDING, "ci-jobs")
    exc = refused(env)
    assert exc.reason == "NameConflict"
    assert f"RoleBinding '{BINDING}'" in exc.message and "'ci-jobs'" in exc.message
    assert "delete or rename it" in exc.message
    assert env.posts() == 0 and "apply_role_binding" not in env.kube.writes
    assert env.kube.role_bindings == {("ci-jobs", BINDING): users_object(BINDING, "ci-jobs")}
    assert not env.kube.service_accounts and "builds" not in env.kube.statefulsets


def test_a_binding_named_in_the_status_that_is_not_the_runners_is_left_and_reported(env: Env) -> None:
    run(env)
    env.kube.role_bindings[("kube-system", "admins")] = users_object("admins", "kube-system")
    env.kube.status["executor"]["roleBindings"].append("kube-system/admins")  # whoever may patch runners/status
    env.delete()
    assert env.kube.role_bindings == {("kube-system", "admins"): users_object("admins", "kube-system")}
    warnings = [m for t, r, m in env.events if t == "Warning" and r == "ExecutorAccessLeft"]
    assert warnings == [
        "RoleBinding admins in namespace kube-system is named in status.executor but is not this Runner's: "
        "left in place"
    ]


def test_a_foreign_binding_the_status_names_is_not_revoked_by_a_reconcile_either(env: Env) -> None:
    run(env)
    env.kube.role_bindings[("ci", "glrt.ci.builds.pod-logs")] = users_object("glrt.ci.builds.pod-logs")
    env.kube.status["executor"]["roleBindings"].append("ci/glrt.ci.builds.pod-logs")
    run(env)
    assert ("ci", "glrt.ci.builds.pod-logs") in env.kube.role_bindings and ("ci", BINDING) in env.kube.role_bindings
    assert "ExecutorAccessLeft" in env.reasons()
    assert env.kube.status["executor"]["roleBindings"] == [f"{NAMESPACE}/{BINDING}"]
