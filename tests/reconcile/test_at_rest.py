"""A fleet at rest costs the API server no writes: a resync that finds everything as it should be applies no child
and patches no status; a real change (an edit, a child deleted by hand, a manager going offline) is written."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException

from glrt_operator.core.errors import ReconcileError
from glrt_operator.runners import builders, handlers

from .conftest import UID, Env
from .test_handlers import call, posted  # noqa: F401 -- fixture
from .test_reconcile import register_manager


@pytest.fixture
def at_rest(env: Env, posted: list[tuple[str, str]]) -> Env:  # noqa: F811
    """A Runner created by its event handler, its pod running and its manager registered, resynced once."""
    call(handlers.on_runner_created_or_changed, env)
    env.kube.pods = {"builds-0"}
    env.kube.ready = 1
    register_manager(env, builders.system_id(UID, 0))
    call(handlers.resync_runner, env)  # the manager shows up: a change worth writing
    env.kube.writes.clear()
    return env


def test_a_resync_at_rest_writes_nothing(at_rest: Env) -> None:
    for _ in range(2):
        patch = call(handlers.resync_runner, at_rest)
        assert patch == {} and at_rest.kube.writes == []
    replicas = at_rest.kube.status["replicas"]
    assert [(r["ordinal"], r["managerStatus"]) for r in replicas] == [(0, "online")]


def test_a_contact_alone_is_not_worth_a_status_write(at_rest: Env) -> None:
    register_manager(at_rest, builders.system_id(UID, 0))  # contacts GitLab again: contactedAt moves
    assert call(handlers.resync_runner, at_rest) == {} and at_rest.kube.writes == []


def test_an_edit_applies_the_children_it_changes(at_rest: Env) -> None:
    at_rest.spec["replicas"] = 2
    patch = call(handlers.on_runner_created_or_changed, at_rest, generation=2)
    assert "apply_secret" in at_rest.kube.writes and "apply_statefulset" in at_rest.kube.writes
    assert at_rest.kube.statefulsets["builds"]["spec"]["replicas"] == 2
    assert patch["status"]["observedGeneration"] == 2
    at_rest.kube.writes.clear()
    assert call(handlers.resync_runner, at_rest, generation=2) == {} and at_rest.kube.writes == []


def test_a_child_deleted_by_hand_is_applied_again(at_rest: Env) -> None:
    del at_rest.kube.statefulsets["builds"]
    del at_rest.kube.service_accounts[("ci", "builds-runner")]
    call(handlers.resync_runner, at_rest)
    assert sorted(at_rest.kube.writes) == ["apply_service_account", "apply_statefulset"]
    assert "builds" in at_rest.kube.statefulsets


def test_a_child_edited_by_hand_is_applied_again(at_rest: Env) -> None:
    at_rest.kube.secrets["builds-runner-config"]["data"]["config.toml"] = "concurrent = 1000\n"
    call(handlers.resync_runner, at_rest)
    assert at_rest.kube.writes == ["apply_secret", "annotate_pod"]  # the pod reads the repaired Secret at once
    assert "concurrent = 1000" not in at_rest.kube.secrets["builds-runner-config"]["data"]["config.toml"]


def test_a_manager_going_offline_is_written(at_rest: Env) -> None:
    assert handlers.DIRECTORY is not None
    handlers.DIRECTORY.ttl = 0  # the next resync reads a new batch (batches are kept a while: runners.batch)
    at_rest.gitlab.clock.advance(3 * 3600)  # GitLab's online window is 2 h
    try:
        patch = call(handlers.resync_runner, at_rest)
    finally:
        at_rest.gitlab.clock.advance(-3 * 3600)
    assert [r["managerStatus"] for r in patch["status"]["replicas"]] == ["offline"]
    assert at_rest.kube.writes == []  # the status goes in Kopf's patch; no child changed


def test_a_new_statefulset_has_no_pods_to_list(env: Env) -> None:
    """Listing pods costs the apiserver a scan of the namespace's pods: a Runner's creation, whose StatefulSet is
    new, lists none; the next reconcile does."""
    env.kube.fail["list_pods"] = ApiException(status=500, reason="no list expected")
    env.reconcile()
    assert "builds" in env.kube.statefulsets
    with pytest.raises(ReconcileError):
        env.reconcile()
