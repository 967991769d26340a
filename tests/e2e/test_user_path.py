"""The whole user path on a real node, as one test: the chart installs the operator from its locally built image,
the operator (a pod, Ready through /healthz) registers a Runner whose manager pods come up and poll GitLab, the
token rotates, the Runner is deleted and `helm uninstall` leaves nothing behind."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.e2e.conftest import PAT, Runners
from tests.e2e.test_helm_chart import CHART, TEST_SETTINGS
from tests.e2e.test_pods import gitlab, polling_managers, ready_replicas, stand_in  # noqa: F401 -- fixture
from tests.fake_gitlab import FakeGitLab
from tests.harness.controlplane import ControlPlane
from tests.harness.node import Node
from tests.harness.rotation import blackouts, pods_settled, reset_times
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster


def restart_counts(core: client.CoreV1Api, namespace: str) -> dict[str, int]:
    return {
        p.metadata.name: sum(c.restart_count for c in p.status.container_statuses or [])
        for p in core.list_namespaced_pod(namespace).items
    }


def wait_pods(node: Node, namespace: str, predicate: Callable[[], Any], message: str, timeout: float = 120) -> Any:
    """wait_for, whose failure shows the namespace's pods, Events and logs."""
    try:
        return wait_for(predicate, timeout=timeout, message=message)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{node.describe(namespace)}") from None


@pytest.mark.timeout(600)
def test_install_register_rotate_delete_uninstall(
    control_plane: ControlPlane,
    kube: client.ApiClient,
    node: Node,
    gitlab: FakeGitLab,  # noqa: F811 -- the fixture on the node's gateway
    crd_installed: list[str],
    tmp_path: Path,
) -> None:
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    suffix = secrets.token_hex(3)
    system_ns, ci_ns = f"glrt-system-{suffix}", f"ci-{suffix}"
    for ns in (system_ns, ci_ns):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    owner = next(iter(gitlab.runners.values()), None)
    assert owner is None, "a fresh fake GitLab"
    values = {
        "image": {"repository": "localhost/glrt-operator", "tag": "test", "pullPolicy": "Never"},
        "watch": {"namespaces": [ci_ns]},
        "settings": TEST_SETTINGS,
        # The session's CRDs are not this release's; one operator replica, as before leader election.
        "crds": {"install": False},
        "replicaCount": 1,
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    release = "glrt"
    control_plane.helm("install", release, str(CHART), "--namespace", system_ns, "--values", str(values_file))
    try:
        wait_pods(
            node,
            system_ns,
            lambda: (d := apps.list_namespaced_deployment(system_ns).items) and (d[0].status.ready_replicas or 0) == 1,
            "the operator pod Ready through /healthz",
        )
        (pod,) = core.list_namespaced_pod(system_ns).items
        assert pod.spec.containers[0].image == "localhost/glrt-operator:test"
        # In-cluster configuration as in a real cluster: the kubelet's KUBERNETES_SERVICE_* (the kubernetes
        # Service's ClusterIP, routed by kube-proxy), nothing set in the pod spec.
        assert not [e.name for e in pod.spec.containers[0].env or [] if e.name.startswith("KUBERNETES_")]
        assert pod.status.container_statuses[0].ready

        runners = Runners(kube, ci_ns, gitlab.url)
        runners.put_secret("gitlab-api", {"token": PAT})
        runners.create(runners.manifest(**stand_in(2)))
        status = runners.wait_ready(timeout=120)["status"]
        runner_id = int(status["runnerId"])
        ids = {r["systemId"] for r in status["replicas"]}
        wait_pods(node, ci_ns, lambda: ready_replicas(runners) == 2, "2 manager pods Ready")
        wait_for(lambda: polling_managers(gitlab, runner_id) == ids, timeout=60, message="one manager per replica")
        assert set(gitlab.runners[runner_id].managers) == ids

        # Rotation: GitLab refuses the old token at once; the operator stores the new one and touches each pod,
        # so the kubelet rewrites the Secret volume now, not at its next sync (1m here, the default).
        wait_for(lambda: pods_settled(core, ci_ns, 30.0), timeout=120, message="pods Ready for 30 s")
        restarts = restart_counts(core, ci_ns)
        resets = len(reset_times(gitlab))
        runners.patch_spec(tokenRotation={"requestedAt": datetime.now(UTC).isoformat()})
        reset_at = wait_for(
            lambda: (t := reset_times(gitlab))[resets:] and t[resets], timeout=60, message="the token reset"
        )
        gaps = wait_for(
            lambda: (b := blackouts(gitlab, reset_at, ids)).keys() == ids and b,
            timeout=60,
            message="each replica polls with the new token",
        )
        assert max(gaps.values()) <= 5.0, f"blackout per replica: {gaps}"
        assert restart_counts(core, ci_ns) == restarts, "no pod restarted"
        version = core.read_namespaced_secret("builds-runner-config", ci_ns).metadata.resource_version
        annotations = [p.metadata.annotations for p in core.list_namespaced_pod(ci_ns).items]
        assert [a.get("glrt.dev/config-secret-version") for a in annotations] == [version, version]

        runners.delete()
        wait_for(lambda: not runners.exists(), timeout=60, message="the Runner deleted")
        assert runner_id not in gitlab.runners
        wait_for(lambda: not core.list_namespaced_pod(ci_ns).items, timeout=60, message="manager pods gone")
    finally:
        control_plane.helm("uninstall", release, "--namespace", system_ns, "--wait", check=False)
    wait_for(lambda: not core.list_namespaced_pod(system_ns).items, timeout=60, message="operator pod gone")
    left = control_plane.kubectl(
        "get", "all,secrets,roles,rolebindings,serviceaccounts,configmaps", "-n", ci_ns, "-o", "name"
    ).stdout.split()
    left += control_plane.kubectl("get", "all,roles,rolebindings", "-n", system_ns, "-o", "name").stdout.split()
    ours = [name for name in left if "glrt" in name or "builds" in name]
    assert ours == [], f"left behind: {ours}"
    cluster_wide = control_plane.kubectl("get", "clusterroles,clusterrolebindings", "-o", "name").stdout.split()
    assert [n for n in cluster_wide if "glrt" in n] == []
    for ns in (system_ns, ci_ns):
        core.delete_namespace(ns)
