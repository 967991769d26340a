"""The harness's control plane is a real cluster: right version, RBAC enforced, controllers running; on the pinned
Kubernetes version and on the oldest supported minor."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client, config

from glrt_operator.core.api import CLUSTER_GITLAB_CONNECTION
from tests.harness.binaries import versions
from tests.harness.controlplane import ControlPlane, ControlPlaneError
from tests.harness.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.oldest_kubernetes]


def _gone(read: Callable[..., object], *args: str) -> bool:
    """True once ``read(*args)`` answers 404."""
    try:
        read(*args)
    except client.ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def test_apiserver_reports_the_version_it_runs(
    control_plane: ControlPlane, kube: client.ApiClient, kubernetes_version: str
) -> None:
    assert versions()["KUBERNETES_VERSION"] == "v1.35.4" and versions()["KUBERNETES_OLDEST_VERSION"] == "v1.32.13"
    assert control_plane.kubernetes_version == kubernetes_version
    assert client.VersionApi(kube).get_code().git_version == kubernetes_version
    reported = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert reported["serverVersion"]["gitVersion"] == kubernetes_version


def test_kubectl_lists_namespaces(control_plane: ControlPlane, namespace: str) -> None:
    names = set(control_plane.kubectl("get", "ns", "-o", "name").stdout.split())
    assert {"namespace/default", "namespace/kube-system", f"namespace/{namespace}"} <= names


def test_helm_reaches_the_cluster(control_plane: ControlPlane, namespace: str) -> None:
    # `helm list` queries release Secrets in the namespace, so it fails unless it reaches the apiserver.
    listed = control_plane.helm("list", "-n", namespace, "-o", "json")
    assert json.loads(listed.stdout) == []


def test_rbac_denies_serviceaccount_until_bound(
    control_plane: ControlPlane, kube: client.ApiClient, namespace: str
) -> None:
    sa_config = control_plane.serviceaccount_kubeconfig(namespace, "probe")
    user = f"system:serviceaccount:{namespace}:probe"

    def list_secrets(ns: str = namespace) -> tuple[int, str]:
        result = control_plane.kubectl("get", "secrets", "-n", ns, kubeconfig=sa_config, check=False)
        return result.returncode, result.stderr

    whoami = control_plane.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", kubeconfig=sa_config)
    assert whoami.stdout == user  # the token really authenticates as the ServiceAccount

    code, stderr = list_secrets()
    assert code != 0
    assert "Forbidden" in stderr and user in stderr

    rbac = client.RbacAuthorizationV1Api(kube)
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="secret-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["get", "list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="secret-reader"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="secret-reader"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="probe", namespace=namespace)],
        ),
    )
    # The authorizer sees new bindings through an informer, so allow a moment.
    wait_for(lambda: list_secrets()[0] == 0, 30, 0.2, message="the RoleBinding to take effect")

    # The binding is namespaced: other namespaces stay forbidden.
    code, stderr = list_secrets("kube-system")
    assert code != 0 and "Forbidden" in stderr
    # Impersonation by the admin sees the same decision.
    allowed = control_plane.kubectl("auth", "can-i", "list", "secrets", "-n", namespace, as_user=user)
    assert allowed.stdout.strip() == "yes"


def test_garbage_collector_deletes_dependents(kube: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube)
    owner = core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner")))
    reference = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dependent", owner_references=[reference])),
    )
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="bystander")))

    core.delete_namespaced_config_map("owner", namespace)
    wait_for(
        lambda: _gone(core.read_namespaced_config_map, "dependent", namespace),
        60,
        0.2,
        message="the garbage collector to delete the dependent ConfigMap",
    )
    assert core.read_namespaced_config_map("bystander", namespace).metadata.name == "bystander"


def test_statefulset_controller_creates_pods(kube: client.ApiClient, namespace: str) -> None:
    labels = {"app": "web"}
    client.AppsV1Api(kube).create_namespaced_stateful_set(
        namespace,
        client.V1StatefulSet(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1StatefulSetSpec(
                replicas=2,
                # Parallel: without a kubelet web-0 never gets Ready, which blocks web-1 under OrderedReady.
                pod_management_policy="Parallel",
                service_name="web",
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="registry.invalid/web:1")]),
                ),
            ),
        ),
    )
    core = client.CoreV1Api(kube)

    def pods() -> list[client.V1Pod]:
        found = core.list_namespaced_pod(namespace, label_selector="app=web").items
        return found if len(found) == 2 else []

    created = wait_for(pods, 60, 0.2, message="the StatefulSet controller to create 2 pods")
    assert sorted(p.metadata.name for p in created) == ["web-0", "web-1"]
    for pod in created:
        (ref,) = pod.metadata.owner_references
        assert (ref.kind, ref.name, ref.controller) == ("StatefulSet", "web", True)
        assert pod.status.phase == "Pending"  # no kubelet, no scheduler


def test_namespace_controller_finishes_deletion(control_plane: ControlPlane, kube: client.ApiClient) -> None:
    core = client.CoreV1Api(kube)
    name = f"doomed-{secrets.token_hex(3)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # Controllers that fill every new namespace.
    wait_for(lambda: core.read_namespaced_service_account("default", name), 30, 0.2, ignore=(client.ApiException,))
    wait_for(
        lambda: core.read_namespaced_config_map("kube-root-ca.crt", name),
        30,
        0.2,
        ignore=(client.ApiException,),
    )
    core.create_namespaced_config_map(name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="content")))

    core.delete_namespace(name)
    # The namespace stays Terminating until the namespace controller empties it and drops its finalizer.
    wait_for(lambda: _gone(core.read_namespace, name), 90, 0.5, message=f"namespace {name} to be deleted")


def test_lifecycle_start_stop_leaves_nothing_behind(tmp_path: Path, kubernetes_version: str) -> None:
    cp = ControlPlane(workdir=tmp_path, kubernetes_version=kubernetes_version)
    with cp:
        pids = cp.pids()
        assert set(pids) == {"etcd", "apiserver", "controller-manager"}
        data_dir = cp.dir
        assert data_dir.parent == tmp_path
        assert cp.kubectl("get", "ns", "default", "-o", "name").stdout.strip() == "namespace/default"
    for component, pid in pids.items():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # reaped by stop(), so the PID is gone rather than a zombie
        assert cp.logs(component), f"{component} log lost after stop()"
    assert not data_dir.exists()
    cp.stop()  # idempotent


def test_the_audit_log_attributes_the_operators_requests(
    tmp_path: Path, kubernetes_version: str, control_plane: ControlPlane
) -> None:
    """The operator's own identity, and (when asked for) an audit log of its requests alone: the controllers run as
    the admin, so their writes (here the StatefulSet controller's pod create) stay out of it."""
    assert not control_plane.audit_log_path.exists()  # off by default: no cost to the other tests
    with ControlPlane(workdir=tmp_path, kubernetes_version=kubernetes_version, audit_log=True) as cp:
        who = cp.kubectl(
            "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", kubeconfig=cp.operator_kubeconfig
        )
        assert who.stdout == "glrt-operator"
        start = cp.audit_offset()
        ops = client.AppsV1Api(config.new_client_from_config(config_file=str(cp.operator_kubeconfig)))
        body = client.V1StatefulSet(
            metadata=client.V1ObjectMeta(name="audited"),
            spec=client.V1StatefulSetSpec(
                replicas=1,
                selector=client.V1LabelSelector(match_labels={"app": "audited"}),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels={"app": "audited"}),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
                ),
            ),
        )
        ops.create_namespaced_stateful_set("default", body)
        ops.read_namespaced_stateful_set("audited", "default")
        core = client.CoreV1Api(cp.api_client())
        wait_for(lambda: core.list_namespaced_pod("default").items, 30, 0.5, message="the controller's pod")
        counts = cp.audit_requests(start, cp.audit_offset())
        assert counts == {("create", "statefulsets"): 1, ("get", "statefulsets"): 1}


def test_crds_are_installed_and_served(control_plane: ControlPlane, crd_installed: list[str], namespace: str) -> None:
    assert "runners.glrt.dev" in crd_installed
    for name in crd_installed:
        plural, _, group = name.partition(".")
        listed = control_plane.kubectl("get", f"{plural}.{group}", "-n", namespace, "-o", "name")
        # Served (an unknown resource type would fail), and empty in a new namespace; a cluster-scoped kind lists
        # the whole cluster's, which other tests may still be deleting.
        if name != CLUSTER_GITLAB_CONNECTION.crd_name:
            assert listed.stdout == ""


def test_failed_start_reports_log_tail_and_cleans_up(tmp_path: Path, kubernetes_version: str) -> None:
    # Directories left by earlier runs: one whose owner is dead (SIGKILLed run), one whose owner lives.
    exited = subprocess.Popen(["true"])
    exited.wait()
    stale, live = tmp_path / "glrt-cp-stale", tmp_path / "glrt-cp-live"
    for path, pid in ((stale, exited.pid), (live, os.getpid())):
        path.mkdir()
        (path / "owner.pid").write_text(str(pid))

    cp = ControlPlane(workdir=tmp_path, controllers=("no-such-controller",), kubernetes_version=kubernetes_version)
    with pytest.raises(ControlPlaneError, match="controller-manager did not become ready") as failure:
        cp.start()
    assert "no-such-controller" in str(failure.value)  # the component's own log explains why
    assert cp.pids() == {}
    assert list(tmp_path.iterdir()) == [live]  # its own directory removed, the stale one swept
