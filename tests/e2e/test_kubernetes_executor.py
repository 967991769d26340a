"""The kubernetes executor on a real node, with the RBAC GitLab Runner's documentation asks for.

A manager pod (the runner stand-in, tests/runner_standin) takes a job from the fake GitLab and runs it in a job pod
of another namespace, through the in-cluster API (the kubernetes Service, routed by the node's kube-proxy) with its
own ServiceAccount token: the RBAC decides, as it would for gitlab-runner. The manager pods are built here by hand
(the operator will render them); the Role holds the rules the runner's documentation lists for default settings
(https://docs.gitlab.com/runner/executors/kubernetes/#configure-runner-api-permissions).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from tests.fake_gitlab import FakeGitLab, jobs
from tests.harness.controlplane import ControlPlane
from tests.harness.node import Node, image_names
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster

# pods create/get/delete (+ list/watch: informers), pods/attach and pods/exec, secrets for registry credentials,
# events list for a failed job's warnings; serviceaccounts, services and pods/log as the documentation's table has.
JOB_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "delete", "get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/attach", "pods/exec"], "verbs": ["create", "delete", "get", "patch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete", "get", "update"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "get"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get", "list"]},
]


@dataclass
class Setup:
    gitlab: FakeGitLab
    core: client.CoreV1Api
    managers_ns: str
    jobs_ns: str
    allowed: int  # runner id of the manager whose ServiceAccount the Role is bound to
    denied: int  # runner id of the manager running as the namespace's default ServiceAccount


def config_toml(url: str, token: str, jobs_ns: str) -> str:
    images = image_names()
    return f"""concurrent = 2
check_interval = 1

[[runners]]
  name = "k8s"
  url = "{url}"
  token = "{token}"
  executor = "kubernetes"
  [runners.kubernetes]
    namespace = "{jobs_ns}"
    image = "{images["job"]}"
    helper_image = "{images["helper"]}"
    pull_policy = ["if-not-present"]
    service_account = "job"
    privileged = false
    cpu_request = "10m"
    memory_request = "16Mi"
    memory_limit = "256Mi"
    poll_interval = 1
    poll_timeout = 60
    pod_termination_grace_period_seconds = 1
    [runners.kubernetes.node_selector]
      "kubernetes.io/os" = "linux"
    [runners.kubernetes.node_tolerations]
      "glrt.dev/jobs=true" = "NoSchedule"
"""


def manager_pod(name: str, service_account: str | None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "runner-manager"}},
        "spec": {
            **({"serviceAccountName": service_account} if service_account else {}),
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "runner",
                    "image": image_names()["runner"],
                    "imagePullPolicy": "Never",
                    "args": ["run", "--config", "/etc/gitlab-runner/config.toml"],
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/gitlab-runner", "readOnly": True}],
                }
            ],
            "volumes": [{"name": "config", "secret": {"secretName": f"{name}-config"}}],
        },
    }


def wait_node(
    node: Node, namespaces: list[str], predicate: Callable[[], Any], message: str, timeout: float = 60
) -> Any:
    """wait_for, whose failure shows the namespaces' pods, Events and logs (the manager's log has the job's steps)."""
    try:
        return wait_for(predicate, timeout=timeout, message=message, interval=0.1)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n" + "\n".join(node.describe(ns) for ns in namespaces)) from None


@pytest.fixture(scope="module")
def setup(control_plane: ControlPlane, kube: client.ApiClient, node: Node) -> Iterator[Setup]:
    core, rbac = client.CoreV1Api(kube), client.RbacAuthorizationV1Api(kube)
    suffix = secrets.token_hex(3)
    managers_ns, jobs_ns = f"runner-managers-{suffix}", f"ci-jobs-{suffix}"
    for ns in (managers_ns, jobs_ns):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    core.create_namespaced_service_account(managers_ns, {"metadata": {"name": "runner"}})
    core.create_namespaced_service_account(jobs_ns, {"metadata": {"name": "job"}})  # the job pods' own
    rbac.create_namespaced_role(jobs_ns, {"metadata": {"name": "gitlab-runner"}, "rules": JOB_RULES})
    rbac.create_namespaced_role_binding(
        jobs_ns,
        {
            "metadata": {"name": "gitlab-runner"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gitlab-runner"},
            "subjects": [{"kind": "ServiceAccount", "name": "runner", "namespace": managers_ns}],
        },
    )
    with FakeGitLab().running(host=node.gateway) as gitlab:
        allowed, denied = gitlab.create_runner(), gitlab.create_runner()
        for name, runner, account in (("allowed", allowed, "runner"), ("denied", denied, None)):
            data = {
                "config.toml": config_toml(gitlab.url, runner.token or "", jobs_ns),
                ".runner_system_id": f"s_{name:0<12}"[:14] + "\n",
            }
            core.create_namespaced_secret(
                managers_ns, client.V1Secret(metadata=client.V1ObjectMeta(name=f"{name}-config"), string_data=data)
            )
            core.create_namespaced_pod(managers_ns, manager_pod(name, account))
        wait_node(
            node,
            [managers_ns],
            lambda: {r.id for r in (allowed, denied) if gitlab.runners[r.id].managers} == {allowed.id, denied.id},
            "both managers poll GitLab",
        )
        yield Setup(gitlab, core, managers_ns, jobs_ns, allowed.id, denied.id)
    for ns in (managers_ns, jobs_ns):
        core.delete_namespace(ns)


def manager_log(setup: Setup, name: str) -> str:
    return str(setup.core.read_namespaced_pod_log(name, setup.managers_ns, container="runner"))


def job_pods(setup: Setup) -> list[Any]:
    return list(setup.core.list_namespaced_pod(setup.jobs_ns).items)


def finished(setup: Setup, job_id: int) -> dict[str, str] | None:
    return jobs.results(setup.gitlab).get(job_id)


def test_a_job_runs_in_a_job_pod_created_through_the_in_cluster_api(
    setup: Setup, node: Node, record_property: Callable[[str, object], None]
) -> None:
    # The manager reaches the apiserver as in a real cluster: nothing in its spec says where.
    manager = setup.core.read_namespaced_pod("allowed", setup.managers_ns)
    assert not [e.name for e in manager.spec.containers[0].env or [] if e.name.startswith("KUBERNETES_")]
    marker = f"job-output-{secrets.token_hex(4)}"
    payload = jobs.script_job(
        ['echo "$GREETING $(id -u)"', "sleep 2"],
        image=image_names()["job"],
        variables={"GREETING": marker},
        registry_credentials=("registry.example.test", "ci-user", "ci-password-not-a-token"),
    )
    job_id = setup.gitlab.enqueue_job(runner_id=setup.allowed, payload=payload)
    wait_node(
        node,
        [setup.managers_ns, setup.jobs_ns],
        lambda: job_id in {j[0] for j in setup.gitlab.assigned_jobs},
        "job taken",
    )
    taken = time.monotonic()
    pod = wait_node(node, [setup.managers_ns, setup.jobs_ns], lambda: next(iter(job_pods(setup)), None), "a job pod")
    created = time.monotonic()
    running = wait_node(
        node,
        [setup.managers_ns, setup.jobs_ns],
        lambda: (p := setup.core.read_namespaced_pod(pod.metadata.name, setup.jobs_ns)).status.phase == "Running" and p,
        "the job pod Running",
    )
    figures = {
        "job taken -> pod created (s)": created - taken,
        "job taken -> pod Running (s)": time.monotonic() - taken,
    }
    for name, value in figures.items():
        record_property(name, round(value, 2))
        print(f"kubernetes executor: {name}: {value:.2f}")  # shown with -s

    spec = running.spec
    assert [c.name for c in spec.containers] == ["build", "helper"]
    assert [c.name for c in spec.init_containers] == ["init-permissions"]
    assert spec.containers[0].image == image_names()["job"]
    assert {spec.containers[1].image, spec.init_containers[0].image} == {image_names()["helper"]}
    assert spec.service_account_name == "job"
    assert spec.node_selector == {"kubernetes.io/os": "linux"}
    assert any(t.key == "glrt.dev/jobs" and t.value == "true" for t in spec.tolerations)
    assert spec.containers[0].resources.requests == {"cpu": "10m", "memory": "16Mi"}
    assert spec.containers[0].security_context.privileged is False
    annotations = running.metadata.annotations
    assert annotations["job.runner.gitlab.com/id"] == str(job_id)
    (pull_secret,) = spec.image_pull_secrets
    secret = setup.core.read_namespaced_secret(pull_secret.name, setup.jobs_ns)
    assert secret.type == "kubernetes.io/dockercfg"
    assert [(o.kind, o.name) for o in secret.metadata.owner_references] == [("Pod", running.metadata.name)]

    result = wait_node(
        node, [setup.managers_ns, setup.jobs_ns], lambda: finished(setup, job_id), "the job's final state"
    )
    assert result == {"state": "success", "failure_reason": ""}, jobs.trace(setup.gitlab, job_id)
    trace = jobs.trace(setup.gitlab, job_id)
    assert f'$ echo "$GREETING $(id -u)"\n{marker} 0\n' in trace
    assert "Using Kubernetes namespace: " + setup.jobs_ns in trace and "Job succeeded" in trace
    assert "won't use informers" not in trace, "list and watch are granted: informers"
    assert "ci-password-not-a-token" not in trace
    # Pod deleted by the runner; the Secret it owned goes with it (garbage collector).
    wait_node(node, [setup.managers_ns, setup.jobs_ns], lambda: not job_pods(setup), "the job pod gone")
    wait_for(
        lambda: not [s for s in setup.core.list_namespaced_secret(setup.jobs_ns).items if s.type.endswith("dockercfg")],
        timeout=30,
        message="the credentials Secret gone",
    )
    log = manager_log(setup, "allowed")
    assert "Using informers" in log and f"Created job pod {setup.jobs_ns}/{running.metadata.name}" in log


def test_a_failing_script_fails_the_job_with_script_failure(setup: Setup, node: Node) -> None:
    job_id = setup.gitlab.enqueue_job(runner_id=setup.allowed, payload=jobs.script_job(["echo before", "exit 3"]))
    result = wait_node(
        node, [setup.managers_ns, setup.jobs_ns], lambda: finished(setup, job_id), "the job's final state"
    )
    trace = jobs.trace(setup.gitlab, job_id)
    assert result == {"state": "failed", "failure_reason": "script_failure"}, trace
    assert "$ echo before\nbefore\n$ exit 3\n" in trace
    assert "ERROR: Job failed: command terminated with exit code 3" in trace
    assert "Error retrieving events" not in trace, "events list is granted"
    wait_node(node, [setup.managers_ns, setup.jobs_ns], lambda: not job_pods(setup), "the job pod gone")


def test_without_rbac_the_job_fails_as_a_system_failure_and_no_pod_is_made(setup: Setup, node: Node) -> None:
    job_id = setup.gitlab.enqueue_job(runner_id=setup.denied, payload=jobs.script_job(["echo never"]))
    result = wait_node(
        node, [setup.managers_ns, setup.jobs_ns], lambda: finished(setup, job_id), "the job's final state"
    )
    trace = jobs.trace(setup.gitlab, job_id)
    assert result == {"state": "failed", "failure_reason": "runner_system_failure"}, trace
    assert 'WARNING: won\'t use informers: "not allowed: list on pods"' in trace
    user = f"system:serviceaccount:{setup.managers_ns}:default"
    assert (
        "ERROR: Job failed (system failure): prepare environment: setting up build pod: pods is forbidden: "
        f'User "{user}" cannot create resource "pods" in API group "" in the namespace "{setup.jobs_ns}"'
    ) in trace
    assert "won't use informers" in manager_log(setup, "denied")
    assert not job_pods(setup)
    # The manager stays up and keeps polling, as gitlab-runner does.
    assert setup.core.read_namespaced_pod("denied", setup.managers_ns).status.phase == "Running"
