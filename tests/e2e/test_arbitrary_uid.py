"""The pods run with an arbitrary UID and GID 0, as OpenShift's restricted-v2 SCC starts them (a UID and an
fsGroup from the namespace's range, group 0), on a real node.

No SCC admission runs here, so the test plays its part: it checks that what the operator and the chart produce for
OpenShift pins no ID (restricted-v2 would refuse it), then adds the IDs the SCC assigns. The manager pod and its
config Secret are the operator's own builders' (`pin_ids=False`, what GLRT_PIN_POD_IDS=false makes), for a runner
created in the fake GitLab; the operator pod's security contexts are the chart's with
`compatibility.openshift.adaptSecurityContext=force`. See docs/development/openshift.md."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from kubernetes import client

from glrt_operator.core.api import API_VERSION
from glrt_operator.runners import builders
from glrt_operator.runners.model import RunnerSpec
from tests.e2e.conftest import GROUP_ID, PAT, PROJECT_ID
from tests.e2e.test_helm_chart import CHART, helm
from tests.fake_gitlab import FakeGitLab
from tests.harness.controlplane import ControlPlane
from tests.harness.node import Node, image_names
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster

ARBITRARY_UID = 1000680000
ASSIGNED_FS_GROUP = 1000680000
# What restricted-v2 adds to a pod that pins none of them: the first UID and fsGroup of the namespace's range.
SCC_ASSIGNS = {"runAsUser": ARBITRARY_UID, "runAsGroup": 0, "fsGroup": ASSIGNED_FS_GROUP}
PINNED = {"runAsUser", "runAsGroup", "fsGroup"}
NAME = "anyuid"
T = TypeVar("T")


@pytest.fixture
def gitlab(node: Node) -> Iterator[FakeGitLab]:
    """The fake GitLab on the address pods reach."""
    with FakeGitLab().running(host=node.gateway) as gl:
        owner = gl.add_user("platform")
        gl.add_group(GROUP_ID, "platform", owners=[owner])
        gl.add_project(PROJECT_ID, "builds", group_id=GROUP_ID, maintainers=[owner])
        gl.add_access_token(PAT, owner, scopes=["create_runner", "manage_runner", "read_api"])
        yield gl


def without_owner(obj: dict[str, Any]) -> dict[str, Any]:
    # No Runner owns these: an owner reference to a missing object would have the garbage collector delete them.
    obj = copy.deepcopy(obj)
    obj["metadata"].pop("ownerReferences", None)
    return obj


def manager_pod(namespace: str, gitlab: FakeGitLab) -> tuple[dict[str, Any], dict[str, Any], int, str]:
    """The config Secret and replica 0's pod as the operator builds them, for a runner made in the fake GitLab;
    with the runner's id and replica 0's system_id."""
    created = httpx.post(
        f"{gitlab.api_url}/user/runners",
        headers={"PRIVATE-TOKEN": PAT},
        json={"runner_type": "project_type", "project_id": PROJECT_ID, "description": "arbitrary uid"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    runner_id, token = created.json()["id"], created.json()["token"]
    spec = RunnerSpec.parse(
        {
            "gitlab": {"url": gitlab.url, "credentialsSecretRef": {"name": "unused"}},
            "runnerType": "project_type",
            "projectId": PROJECT_ID,
            "replicas": 1,
            "manager": {"image": image_names()["runner"], "imagePullPolicy": "Never"},
            "config": {"checkInterval": 1},
        }
    )
    names = builders.child_names(NAME)
    # Dropped again by without_owner(): no Runner exists.
    owner = {"apiVersion": API_VERSION, "kind": "Runner", "name": NAME, "uid": "none", "controller": True}
    rendered = builders.render_config_toml(
        spec, runner_name=NAME, runner_id=runner_id, token=token, default_namespace=namespace
    )
    uid = "5d1f2a7e-0000-4000-8000-000000000001"
    secret = builders.build_config_secret(
        name=names.config_secret,
        namespace=namespace,
        owner=owner,
        runner_name=NAME,
        runner_uid=uid,
        replicas=1,
        rendered=rendered,
    )
    statefulset = builders.build_statefulset(
        spec,
        name=NAME,
        namespace=namespace,
        owner=owner,
        config_secret=names.config_secret,
        config_checksum=rendered.token_free_sha256,
        service_account="default",  # the operator's own one for manager pods is not made here
        pin_ids=False,
    )
    template = statefulset["spec"]["template"]
    pod_spec = copy.deepcopy(template["spec"])
    assert not PINNED & set(pod_spec["securityContext"]), "restricted-v2 refuses a pod that pins its IDs"
    assert not PINNED & set(pod_spec["containers"][0]["securityContext"])
    pod_spec["securityContext"] |= SCC_ASSIGNS
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        # The start script takes the ordinal from the pod's name, as a StatefulSet names it.
        "metadata": {"name": f"{NAME}-0", "namespace": namespace, "labels": template["metadata"]["labels"]},
        "spec": pod_spec,
    }
    return without_owner(secret), pod, runner_id, builders.system_id(uid, 0)


def sh(cp: ControlPlane, namespace: str, pod: str, script: str) -> tuple[int, str]:
    result = cp.kubectl("exec", "-n", namespace, pod, "-c", "runner", "--", "/bin/sh", "-c", script, check=False)
    return result.returncode, (result.stdout + result.stderr).strip()


def wait_or_describe(node: Node, namespace: str, predicate: Callable[[], T], what: str) -> T:
    """wait_for, failing with the namespace's pods, Events and logs."""
    try:
        return wait_for(predicate, timeout=120, message=what)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{node.describe(namespace)}") from None


def pod_ready(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    pod = core.read_namespaced_pod(name, namespace)
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def test_the_manager_pod_runs_with_an_arbitrary_uid_and_gid_0(
    control_plane: ControlPlane, kube: client.ApiClient, namespace: str, node: Node, gitlab: FakeGitLab
) -> None:
    core = client.CoreV1Api(kube)
    secret, pod, runner_id, system_id = manager_pod(namespace, gitlab)
    core.create_namespaced_secret(namespace, secret)
    core.create_namespaced_pod(namespace, pod)
    name = pod["metadata"]["name"]
    wait_or_describe(node, namespace, lambda: pod_ready(core, namespace, name), f"{name} Ready")

    assert sh(control_plane, namespace, name, "id -u; id -g") == (0, f"{ARBITRARY_UID}\n0")
    # The Secret's files (0440) belong to the assigned fsGroup, one of the process's groups.
    stat = sh(control_plane, namespace, name, "stat -c '%a %u:%g' /secrets/..data/config.toml")
    assert stat == (0, f"440 0:{ASSIGNED_FS_GROUP}")
    assert sh(control_plane, namespace, name, "cat /etc/gitlab-runner/.runner_system_id") == (0, system_id)
    # No passwd entry for the UID (the runtime would set HOME=/, the read-only root): HOME is the writable emptyDir.
    assert sh(control_plane, namespace, name, 'echo "$HOME"; cd "$HOME" && touch probe && echo ok') == (
        0,
        "/home/gitlab-runner\nok",
    )
    wait_for(
        lambda: (m := gitlab.runners[runner_id].managers.get(system_id)) is not None and m.contacted_at is not None,
        timeout=60,
        message="the manager polls GitLab with its system_id",
    )


def chart_security_contexts(tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The operator Deployment's pod and container security contexts as the chart renders them for OpenShift."""
    home = {f"HELM_{kind}_HOME": str(tmp_path / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}
    out = helm(home, "template", "glrt", str(CHART), "--set", "compatibility.openshift.adaptSecurityContext=force")
    (deployment,) = (d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    return pod["securityContext"], pod["containers"][0]["securityContext"]


def test_the_operator_image_runs_with_an_arbitrary_uid_and_gid_0(
    control_plane: ControlPlane, kube: client.ApiClient, namespace: str, node: Node, tmp_path: Path
) -> None:
    """The operator's image, with the chart's security contexts and the SCC's IDs: the installed package imports
    and its CLI runs (read-only root, /tmp an emptyDir, HOME there)."""
    core = client.CoreV1Api(kube)
    pod_security, security = chart_security_contexts(tmp_path)
    assert not PINNED & (set(pod_security) | set(security)), "restricted-v2 refuses a pod that pins its IDs"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "operator-anyuid", "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": pod_security | SCC_ASSIGNS,
            "containers": [
                {
                    "name": "operator",
                    "image": image_names()["operator"],
                    "imagePullPolicy": "Never",
                    "command": ["/bin/sh", "-c", 'id -u; id -g; echo "HOME=$HOME"; glrt-operator --help >/dev/null'],
                    "securityContext": security,
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }
    core.create_namespaced_pod(namespace, pod)

    def finished() -> str | None:
        phase = core.read_namespaced_pod("operator-anyuid", namespace).status.phase
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_or_describe(node, namespace, finished, "the operator pod to finish")
    logs = core.read_namespaced_pod_log("operator-anyuid", namespace)
    assert phase == "Succeeded", logs
    assert logs.splitlines() == [str(ARBITRARY_UID), "0", "HOME=/tmp"]
