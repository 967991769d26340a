"""CI jobs through the kubernetes executor, out of the box, on a real node.

The chart installs the operator (its own image, its own RBAC: nothing here writes a Role or a binding);
`examples/runner.yaml` is applied with only its GitLab URL changed; the fake GitLab hands out a job, the manager pod
(the runner stand-in, with gitlab-runner's kubernetes executor calls: docs/development/runner-standin.md) creates
the job pod in the executor namespace through the in-cluster API with the ServiceAccount the operator gave it, the
trace reaches GitLab, the job succeeds and its pod is gone. The images the example names (gitlab-runner's, the
helper's, `alpine:3.20`) are the locally built ones, tagged under those names in the node's containerd: no registry.
"""

from __future__ import annotations

import contextlib
import copy
import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from glrt_operator.runners.builders import CONTAINER_NAME, LABEL_RUNNER
from glrt_operator.runners.model import DEFAULT_RUNNER_IMAGE
from tests.e2e.conftest import PAT, Runners
from tests.e2e.test_helm_chart import CHART, TEST_SETTINGS
from tests.e2e.test_pods import gitlab, polling_managers  # noqa: F401 -- fixture
from tests.fake_gitlab import FakeGitLab, jobs
from tests.harness.controlplane import ControlPlane
from tests.harness.node import Node, image_names
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((ROOT / "examples" / "runner.yaml").read_text())
# What gitlab-runner's kubernetes executor pulls by default, served by the locally built images.
HELPER_IMAGE = "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-v19.4.0"


def wait_on(node: Node, namespaces: list[str], predicate: Callable[[], Any], message: str, timeout: float = 120) -> Any:
    try:
        return wait_for(predicate, timeout=timeout, message=message, interval=0.2)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n" + "\n".join(node.describe(ns) for ns in namespaces)) from None


def can_i(cp: ControlPlane, account: str, *args: str) -> bool:
    result = cp.kubectl("auth", "can-i", *args, f"--as={account}", check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


@pytest.fixture(scope="module")
def images(node: Node) -> None:
    names = image_names()
    job_image = EXAMPLE["spec"]["config"]["kubernetes"]["image"]
    for source, target in (
        (names["runner"], DEFAULT_RUNNER_IMAGE),
        (names["helper"], HELPER_IMAGE),
        (names["job"], f"docker.io/library/{job_image}"),
    ):
        node.ctr("images", "tag", "--force", source, target)


@pytest.fixture
def chart(
    control_plane: ControlPlane, kube: client.ApiClient, node: Node, crd_installed: list[str], tmp_path: Path
) -> Iterator[str]:
    """The operator installed by the chart, cluster-wide; its namespace."""
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    system_ns = f"glrt-system-{secrets.token_hex(3)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=system_ns)))
    values = {
        "image": {"repository": "localhost/glrt-operator", "tag": "test", "pullPolicy": "Never"},
        "settings": TEST_SETTINGS,
        # The session's CRDs are not this release's; one operator replica, as before leader election.
        "crds": {"install": False},
        "replicaCount": 1,
    }
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    control_plane.helm(
        "install", "glrt", str(CHART), "--namespace", system_ns, "--values", str(tmp_path / "values.yaml")
    )
    try:
        wait_on(
            node,
            [system_ns],
            lambda: (d := apps.list_namespaced_deployment(system_ns).items) and (d[0].status.ready_replicas or 0) >= 1,
            "the operator pod Ready",
        )
        yield system_ns
    finally:
        control_plane.helm("uninstall", "glrt", "--namespace", system_ns, "--wait", check=False)
        core.delete_namespace(system_ns)


def namespaces(core: client.CoreV1Api, runner_ns: str, jobs_ns: str) -> None:
    """The Runner's namespace and the job namespace, which accepts Runners of the first (its owner's say)."""
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=runner_ns)))
    accept = {"glrt.dev/accept-from": runner_ns}
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=jobs_ns, annotations=accept)))


def example(gitlab_url: str, *, name: str | None = None, jobs_ns: str | None = None) -> dict[str, Any]:
    """examples/runner.yaml with its GitLab URL pointed at the fake (and, for a second Runner, another name and job
    namespace)."""
    manifest = copy.deepcopy(EXAMPLE)
    manifest["spec"]["gitlab"]["url"] = gitlab_url
    if name:
        manifest["metadata"]["name"] = name
    if jobs_ns:
        manifest["spec"]["config"]["kubernetes"]["namespace"] = jobs_ns
    return manifest


def apply(cp: ControlPlane, manifest: dict[str, Any]) -> None:
    cp.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def run_a_job(fake: FakeGitLab, node: Node, core: client.CoreV1Api, runner_id: int, ns: list[str]) -> dict[str, Any]:
    """A job for this runner, run in a job pod of the executor namespace (`ns[1]`)."""
    marker = f"job-output-{secrets.token_hex(4)}"
    tags = EXAMPLE["spec"]["tags"]  # the example runs tagged jobs only (runUntagged: false)
    job_id = fake.enqueue_job(runner_id=runner_id, tags=tags, payload=jobs.script_job([f"echo {marker}", "sleep 1"]))
    pod = wait_on(node, ns, lambda: next(iter(core.list_namespaced_pod(ns[1]).items), None), "a job pod")
    result = wait_on(node, ns, lambda: jobs.results(fake).get(job_id), "the job's result", timeout=180)
    assert result == {"state": "success", "failure_reason": ""}, jobs.trace(fake, job_id)
    assert marker in jobs.trace(fake, job_id)
    wait_on(node, ns, lambda: not core.list_namespaced_pod(ns[1]).items, "the job pod gone")
    return {"pod": pod, "job_id": job_id}


@pytest.mark.timeout(900)
def test_jobs_run_out_of_the_box_and_deleting_a_runner_removes_its_binding(
    control_plane: ControlPlane,
    kube: client.ApiClient,
    node: Node,
    gitlab: FakeGitLab,  # noqa: F811 -- the fixture on the node's gateway
    images: None,
    chart: str,
) -> None:
    core, rbac = client.CoreV1Api(kube), client.RbacAuthorizationV1Api(kube)
    runner_ns = EXAMPLE["metadata"]["namespace"]
    jobs_ns = EXAMPLE["spec"]["config"]["kubernetes"]["namespace"]
    namespaces(core, runner_ns, jobs_ns)
    try:
        runners = Runners(kube, runner_ns, gitlab.url)
        runners.put_secret("gitlab-api", {"token": PAT})
        apply(control_plane, example(gitlab.url))
        status = runners.wait_ready(EXAMPLE["metadata"]["name"], timeout=180)["status"]
        runner_id = int(status["runnerId"])
        assert status["executor"]["namespace"] == jobs_ns
        # The manager reaches the apiserver as in a real cluster: nothing in the StatefulSet says where.
        name = EXAMPLE["metadata"]["name"]
        template = client.AppsV1Api(kube).read_namespaced_stateful_set(name, runner_ns).spec.template.spec
        (manager,) = [c for c in template.containers if c.name == CONTAINER_NAME]
        assert not [e.name for e in manager.env or [] if e.name.startswith("KUBERNETES_")]
        wait_on(node, [runner_ns], lambda: len(polling_managers(gitlab, runner_id)) == 2, "both managers poll")

        job = run_a_job(gitlab, node, core, runner_id, [runner_ns, jobs_ns])
        spec = job["pod"].spec
        assert spec.containers[0].image == EXAMPLE["spec"]["config"]["kubernetes"]["image"]  # the example's job image
        assert {c.name for c in spec.containers} == {"build", "helper"}
        # One of the two manager pods made the job pod, through the in-cluster API.
        created = f"Created job pod {jobs_ns}/{job['pod'].metadata.name}"
        logs = [core.read_namespaced_pod_log(f"{name}-{i}", runner_ns, container=CONTAINER_NAME) for i in (0, 1)]
        assert [created in log for log in logs].count(True) == 1, logs
        # Every RoleBinding where jobs run is the operator's, for this Runner: nothing here was bound by hand.
        bound = rbac.list_namespaced_role_binding(jobs_ns).items
        assert bound and all((b.metadata.labels or {}).get(LABEL_RUNNER) == name for b in bound), bound

        # Least privilege, asked of the API server: the executor's account may run jobs where they run, no more.
        account = f"system:serviceaccount:{runner_ns}:{EXAMPLE['metadata']['name']}-runner"
        for verb, what in [("create", "pods"), ("delete", "pods"), ("create", "pods/exec"), ("create", "pods/attach")]:
            assert can_i(control_plane, account, verb, what, "-n", jobs_ns), (verb, what)
        for args in [
            ("create", "pods", "-n", runner_ns),
            ("create", "pods", "-n", "kube-system"),
            ("list", "secrets", "-n", jobs_ns),
            ("create", "rolebindings", "-n", jobs_ns),
            ("create", "deployments.apps", "-n", jobs_ns),
        ]:
            assert not can_i(control_plane, account, *args), args

        # A second Runner, jobs in another namespace: the same, with its own binding there.
        other_ns = f"{jobs_ns}-b"
        core.create_namespace(
            client.V1Namespace(
                metadata=client.V1ObjectMeta(name=other_ns, annotations={"glrt.dev/accept-from": runner_ns})
            )
        )
        apply(control_plane, example(gitlab.url, name="builds-b", jobs_ns=other_ns))
        second = int(runners.wait_ready("builds-b", timeout=180)["status"]["runnerId"])
        wait_on(node, [runner_ns], lambda: len(polling_managers(gitlab, second)) == 2, "its managers poll")
        run_a_job(gitlab, node, core, second, [runner_ns, other_ns])
        bindings = [b.metadata.name for b in rbac.list_namespaced_role_binding(other_ns).items]
        assert bindings == [f"glrt.{runner_ns}.builds-b"]
        runners.delete("builds-b")
        wait_on(node, [runner_ns, other_ns], lambda: not runners.exists("builds-b"), "the second Runner deleted", 180)
        assert second not in gitlab.runners
        assert rbac.list_namespaced_role_binding(other_ns).items == []
        assert rbac.list_namespaced_role_binding(jobs_ns).items != []  # the first Runner's stays
    finally:
        for ns in (runner_ns, jobs_ns, f"{jobs_ns}-b"):
            with contextlib.suppress(client.ApiException):
                core.delete_namespace(ns, propagation_policy="Background")
