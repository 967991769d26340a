"""Job pods pull from GitLab's registry with a DeployToken's credentials, kept current across renewals.

The chart installs the operator; a DeployToken beside the Runner keeps a `kubernetes.io/dockerconfigjson` Secret and
copies it into the executor namespace (`spec.secret.copyTo`, which that namespace accepts through its
`glrt.dev/accept-from` annotation); the Runner's job image and helper image are in the test registry (CNCF
Distribution with the fake GitLab's token auth, tests/e2e/test_registry_pull.py), named in
`spec.config.kubernetes` with `imagePullSecrets` and `pullPolicy: [always]`, so the kubelet asks the registry with
the copy's credentials for every job pod. A job runs and prints a marker from its image; the token is renewed and
the old one revoked; a second job pulls again, now only the new token works.
"""

from __future__ import annotations

import base64
import contextlib
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from tests.e2e.conftest import Runners
from tests.e2e.test_deploy_tokens import GROUP, GROUP_ID, PAT, PLURAL, PROJECT_ID, VERSION
from tests.e2e.test_jobs import EXAMPLE, apply, chart, example, images, namespaces, wait_on  # noqa: F401 -- fixtures
from tests.e2e.test_pods import polling_managers
from tests.e2e.test_registry_pull import REPOSITORY, Creds, base_layout, fp, marker_layer, push_image  # noqa: F401 -- fixture
from tests.fake_gitlab import FakeGitLab, jobs
from tests.harness import registry as registry_harness
from tests.harness.controlplane import ControlPlane
from tests.harness.node import Node, build_images, image_names
from tests.harness.registry import Registry

pytestmark = pytest.mark.cluster

RUNNER_NS, JOBS_NS = "ci-pull", "ci-pull-jobs"
SECRET = "registry-pull"


@pytest.fixture
def gitlab(node: Node) -> Iterator[FakeGitLab]:
    """The fake GitLab on the address pods reach; the token may make runners and deploy tokens."""
    with FakeGitLab().running(host=node.gateway) as gl:
        owner = gl.add_user("platform")
        gl.add_group(GROUP_ID, "platform", owners=[owner])
        gl.add_project(PROJECT_ID, "builds", group_id=GROUP_ID, maintainers=[owner])
        gl.add_access_token(PAT, owner, scopes=["api", "create_runner", "manage_runner"])
        yield gl


@pytest.fixture
def registry(node: Node, gitlab: FakeGitLab) -> Iterator[Registry]:
    with registry_harness.running(
        host=node.gateway, gitlab_url=gitlab.url, token_certificate=gitlab.registry_certificate_pem()
    ) as reg:
        node.trust_registry(reg.address, reg.ca_file)
        try:
            yield reg
        finally:
            node.forget_registry(reg.address)


def pusher(gitlab: FakeGitLab) -> Creds:
    made = httpx.post(
        f"{gitlab.api_url}/projects/{PROJECT_ID}/deploy_tokens",
        headers={"PRIVATE-TOKEN": PAT},
        json={"name": "image-pusher", "scopes": ["read_registry", "write_registry"]},
        timeout=5,
    )
    assert made.status_code == 201, made.status_code
    return Creds((made.json()["username"], made.json()["token"]))


def copy_credentials(core: client.CoreV1Api, registry: str) -> Creds | None:
    """(username, token) of the copy in the executor namespace, as the kubelet reads it."""
    try:
        secret = core.read_namespaced_secret(SECRET, JOBS_NS)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    entry = json.loads(base64.b64decode(secret.data[".dockerconfigjson"]))["auths"][registry]
    return Creds((entry["username"], entry["password"]))


def refused(gitlab: FakeGitLab, creds: Creds) -> bool:
    response = httpx.get(
        f"{gitlab.url}/jwt/auth",
        params={"service": "container_registry", "scope": f"repository:{REPOSITORY}:pull"},
        auth=creds,
        timeout=5,
    )
    return response.status_code == 401


def deploy_token(gitlab: FakeGitLab, registry: Registry) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DeployToken",
        "metadata": {"name": "registry", "namespace": RUNNER_NS},
        "spec": {
            "gitlab": {"url": gitlab.url, "credentialsSecretRef": {"name": "gitlab-api"}},
            "projectId": PROJECT_ID,
            "scopes": ["read_registry"],
            # Tokens live 24 s (the fake's setting below): renewed 8 s before, the old one revoked 4 s after.
            "validFor": "1h",
            "renewBefore": "8s",
            "gracePeriod": "4s",
            "secret": {
                "name": SECRET,
                "type": "kubernetes.io/dockerconfigjson",
                "registry": registry.address,
                "copyTo": [JOBS_NS],
            },
        },
    }


def run_pulling_job(
    gitlab: FakeGitLab, node: Node, core: client.CoreV1Api, runner_id: int, marker: str
) -> client.V1Pod:
    tags = EXAMPLE["spec"]["tags"]
    job_id = gitlab.enqueue_job(runner_id=runner_id, tags=tags, payload=jobs.script_job(["cat /pulled.txt"]))
    ns = [RUNNER_NS, JOBS_NS]
    pod = wait_on(node, ns, lambda: next(iter(core.list_namespaced_pod(JOBS_NS).items), None), "a job pod")
    result = wait_on(node, ns, lambda: jobs.results(gitlab).get(job_id), "the job's result", timeout=180)
    assert result == {"state": "success", "failure_reason": ""}, jobs.trace(gitlab, job_id)
    assert marker in jobs.trace(gitlab, job_id)  # its image came from the registry
    wait_on(node, ns, lambda: not core.list_namespaced_pod(JOBS_NS).items, "the job pod gone")
    return pod


@pytest.mark.timeout(900)
def test_job_pods_pull_with_the_deploy_tokens_copy_also_after_a_renewal(
    control_plane: ControlPlane,
    kube: client.ApiClient,
    node: Node,
    gitlab: FakeGitLab,
    registry: Registry,
    base_layout: Path,  # noqa: F811
    images: None,  # noqa: F811
    chart: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    core = client.CoreV1Api(kube)
    creds = pusher(gitlab)
    build = push_image(registry, creds, base_layout, tmp_path, "1")
    helper = registry.ref(REPOSITORY + "/helper", "1")
    helper_layout = tmp_path / "helper-image"
    with tarfile.open(build_images()[image_names()["helper"]]) as archive:  # an OCI layout, as crane pushes it
        archive.extractall(helper_layout, filter="data")
    helper_base = registry.ref(REPOSITORY + "/helper", "base")
    registry.crane("push", str(helper_layout), helper_base, credentials=creds)
    # A layer of its own, so the image ID differs from the node's preloaded helper: the kubelet remembers that an
    # image ID was pulled with credentials (KubeletEnsureSecretPulledImages) and would then make every other pod using
    # the preloaded one pull it again to prove its own right to it.
    layer = marker_layer(tmp_path, "helper")
    registry.crane("append", "-b", helper_base, "-f", str(layer), "-t", helper, credentials=creds)
    gitlab.settings.deploy_token_lifetime_seconds = 24

    namespaces(core, RUNNER_NS, JOBS_NS)
    try:
        runners = Runners(kube, RUNNER_NS, gitlab.url)
        runners.put_secret("gitlab-api", {"token": PAT})
        custom = client.CustomObjectsApi(kube)
        custom.create_namespaced_custom_object(GROUP, VERSION, RUNNER_NS, PLURAL, deploy_token(gitlab, registry))
        first = wait_on(node, [RUNNER_NS], lambda: copy_credentials(core, registry.address), "the copy")

        manifest = example(gitlab.url, jobs_ns=JOBS_NS)
        manifest["metadata"]["namespace"] = RUNNER_NS
        manifest["spec"]["config"]["kubernetes"] |= {
            "image": build.ref,
            "helperImage": helper,
            "imagePullSecrets": [SECRET],
            "pullPolicy": ["always"],
        }
        apply(control_plane, manifest)
        runner_id = int(runners.wait_ready(manifest["metadata"]["name"], timeout=180)["status"]["runnerId"])
        wait_on(node, [RUNNER_NS], lambda: len(polling_managers(gitlab, runner_id)) == 2, "both managers poll")

        pod = run_pulling_job(gitlab, node, core, runner_id, build.marker)
        assert SECRET in [s.name for s in pod.spec.image_pull_secrets or []]
        assert {c.image for c in pod.spec.containers} == {build.ref, helper}
        assert {c.image_pull_policy for c in pod.spec.containers} == {"Always"}

        started = time.monotonic()
        renewed = wait_on(
            node,
            [RUNNER_NS],
            lambda: (c := copy_credentials(core, registry.address)) is not None and c != first and c,
            "the copy renewed",
            timeout=120,
        )
        source = core.read_namespaced_secret(SECRET, RUNNER_NS).data
        assert core.read_namespaced_secret(SECRET, JOBS_NS).data == source  # the copy is the Secret
        wait_on(node, [RUNNER_NS], lambda: refused(gitlab, first), "the old token revoked", timeout=60)
        switched = time.monotonic() - started
        assert not refused(gitlab, renewed)

        # Pulled again (Always) while only the renewed token works.
        run_pulling_job(gitlab, node, core, runner_id, build.marker)
        pulls = [
            e.message
            for e in core.list_namespaced_event(JOBS_NS).items
            if e.reason == "Pulled" and build.ref in (e.message or "")
        ]
        assert len(pulls) >= 2, pulls
        print(
            f"\ncopy renewed from sha256 {fp(first[1])} to {fp(renewed[1])}, old token refused "
            f"{switched:.1f} s after the first job; both jobs pulled their build and helper images with the copy"
        )
    finally:
        for ns in (RUNNER_NS, JOBS_NS):
            with contextlib.suppress(client.ApiException):
                core.delete_namespace(ns, propagation_policy="Background")
