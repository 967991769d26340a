"""The pods run with an arbitrary UID and GID 0, as OpenShift's restricted-v2 SCC starts them (a UID from the
namespace's range, group 0, no fixed runAsUser), on a real node.

Started by hand, not through the operator: the operator pins runAsUser 100, runAsGroup 65533 and fsGroup 65533
(the SCC refuses them). The manager pod is the one the operator's own builders produce, with its securityContext
replaced; its config Secret too, for a runner created in the fake GitLab. The operator's image runs its CLI the
same way. What this takes, and what the operator and chart would change: docs/development/openshift.md."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from kubernetes import client

from glrt_operator.runners import builders
from glrt_operator.runners.model import RunnerSpec
from tests.e2e.conftest import GROUP_ID, PAT, PROJECT_ID
from tests.fake_gitlab import FakeGitLab
from tests.harness.controlplane import ControlPlane
from tests.harness.node import Node, image_names
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster

ARBITRARY_UID = 123456
# What restricted-v2 leaves of the pod's securityContext: no runAsUser to pin, no fsGroup here (the SCC would add
# one from the range; without it the Secret volume's files stay root:root, readable through GID 0).
OPENSHIFT_LIKE = {
    "runAsNonRoot": True,
    "runAsUser": ARBITRARY_UID,
    "runAsGroup": 0,
    "seccompProfile": {"type": "RuntimeDefault"},
}
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
    owner = {"apiVersion": "glrt.dev/v1alpha1", "kind": "Runner", "name": NAME, "uid": "none", "controller": True}
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
    )
    template = statefulset["spec"]["template"]
    pod_spec = copy.deepcopy(template["spec"])
    assert pod_spec["securityContext"]["runAsUser"] == 100  # what the operator pins today
    pod_spec["securityContext"] = dict(OPENSHIFT_LIKE)
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
    # The Secret's files (0440, root:root without an fsGroup) are read through group 0.
    assert sh(control_plane, namespace, name, "stat -c '%a %u:%g' /secrets/..data/config.toml") == (0, "440 0:0")
    assert sh(control_plane, namespace, name, "cat /etc/gitlab-runner/.runner_system_id") == (0, system_id)
    # No passwd entry for the UID: the runtime sets HOME=/, on the read-only root filesystem. The manager pod needs
    # HOME pointed at its writable home directory (docs/development/openshift.md); the stand-in writes nothing there.
    assert sh(control_plane, namespace, name, 'echo "$HOME"; cd "$HOME" && touch probe 2>&1 | tail -1') == (
        0,
        "/\ntouch: probe: Read-only file system",
    )
    assert sh(control_plane, namespace, name, "touch /home/gitlab-runner/probe /tmp/probe && echo ok") == (0, "ok")
    wait_for(
        lambda: (m := gitlab.runners[runner_id].managers.get(system_id)) is not None and m.contacted_at is not None,
        timeout=60,
        message="the manager polls GitLab with its system_id",
    )


def test_the_operator_image_runs_with_an_arbitrary_uid_and_gid_0(
    control_plane: ControlPlane, kube: client.ApiClient, namespace: str, node: Node
) -> None:
    """The operator's image, as the chart's Deployment starts it but with the SCC's UID: the installed package
    imports and its CLI runs (read-only root, /tmp an emptyDir)."""
    core = client.CoreV1Api(kube)
    security = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "operator-anyuid", "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": dict(OPENSHIFT_LIKE),
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
    assert logs.splitlines() == [str(ARBITRARY_UID), "0", "HOME=/"]
