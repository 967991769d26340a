"""An upgrade with live Runners and a running CI job, on a real node.

The previous release (scripts/versions.env: UPGRADE_FROM_COMMIT, the last commit before CRD versions, chart CRD
templates and leader election) runs as its users ran it: its chart from this checkout's history, its image built from
its own Dockerfile, one operator replica with `Recreate`, and the CRDs storing `v1alpha1` as its CRDs did. It
registers `examples/runner.yaml` of that release (2 manager pods, jobs through the kubernetes executor) and a
DeployToken; a 120 s CI job starts. Then the documented upgrade (docs/operations/install.md): the CRDs adopted into
the release, `helm upgrade` to this chart and image. The job ends `success`; GitLab sees the same runner, no token
rotated, no manager added, no deploy token created; every object is stored as `v1beta1` in etcd and `v1alpha1` is
gone from the CRDs' storedVersions (the new operator's migration at start).

The session's CRDs are shared: the test sets their storage version back to `v1alpha1` for its first half and leaves
them as it found them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from glrt_operator.core.api import DEPRECATED_VERSIONS, GROUP, VERSION
from tests.e2e.conftest import PAT, PROJECT_ID, Runners
from tests.e2e.test_helm_chart import CHART, TEST_SETTINGS
from tests.e2e.test_jobs import images, wait_on  # noqa: F401 -- fixture
from tests.e2e.test_pods import gitlab, polling_managers  # noqa: F401 -- fixture
from tests.e2e.test_user_path import restart_counts
from tests.fake_gitlab import FakeGitLab, jobs
from tests.harness.conditions import ready_for_generation
from tests.harness.controlplane import ControlPlane
from tests.harness.node import IMAGES_SCRIPT, Node
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
OLD = DEPRECATED_VERSIONS[0]
RELEASE = "glrt"
PREVIOUS_IMAGE = "localhost/glrt-operator:previous"
DEPLOY_PAT = "glpat-e2e-upgrade-deploy-tokens"  # the DeployToken's: deploy tokens need the api scope
JOB_SECONDS = 120


def upgrade_from() -> str:
    for line in (ROOT / "scripts" / "versions.env").read_text().splitlines():
        if line.startswith("UPGRADE_FROM_COMMIT="):
            return line.partition("=")[2].strip()
    raise AssertionError("scripts/versions.env names no UPGRADE_FROM_COMMIT")


def previous_file(path: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{upgrade_from()}:{path}"], capture_output=True, text=True, check=True
    ).stdout


def previous_chart(into: Path) -> Path:
    """The previous release's chart, as it was in its commit."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", upgrade_from(), "helm/glrt-operator"], capture_output=True, check=True
    ).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "helm" / "glrt-operator"


@pytest.fixture(scope="module")
def previous_image(node: Node) -> str:
    """The previous release's image, built from its own Dockerfile (cached), imported into the node."""
    built = subprocess.run([str(IMAGES_SCRIPT), "operator-previous"], capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr[-3000:]
    (line,) = built.stdout.splitlines()
    name, _, archive = line.partition(" ")
    assert name == PREVIOUS_IMAGE
    node.ctr("images", "import", archive)
    return name


def glrt_crds(cp: ControlPlane) -> list[dict[str, Any]]:
    listing = json.loads(cp.kubectl("get", "crd", "-o", "json").stdout)["items"]
    return [crd for crd in listing if crd["spec"]["group"] == GROUP]


def store_as(cp: ControlPlane, crd: dict[str, Any], version: str) -> None:
    """Make `version` the CRD's storage version (both stay served)."""
    patch = [
        {"op": "replace", "path": f"/spec/versions/{i}/storage", "value": v["name"] == version}
        for i, v in enumerate(crd["spec"]["versions"])
    ]
    cp.kubectl("patch", "crd", crd["metadata"]["name"], "--type=json", "-p", json.dumps(patch))


@pytest.fixture
def previous_storage(control_plane: ControlPlane, crd_installed: list[str]) -> Iterator[list[str]]:
    """The deprecated-version kinds' CRDs storing v1alpha1, as the previous release's did; afterwards the session's
    CRDs as they were (storage, and no Helm ownership left behind)."""
    versioned = [crd for crd in glrt_crds(control_plane) if OLD in {v["name"] for v in crd["spec"]["versions"]}]
    for crd in versioned:
        store_as(control_plane, crd, OLD)
    try:
        yield [crd["metadata"]["name"] for crd in versioned]
    finally:
        for crd in glrt_crds(control_plane):
            name = crd["metadata"]["name"]
            store_as(control_plane, crd, VERSION)
            control_plane.kubectl("label", "crd", name, "app.kubernetes.io/managed-by-", check=False)
            control_plane.kubectl(
                "annotate", "crd", name, "meta.helm.sh/release-name-", "meta.helm.sh/release-namespace-", check=False
            )


def stored_versions(cp: ControlPlane, crd: str) -> list[str]:
    versions: list[str] = json.loads(cp.kubectl("get", "crd", crd, "-o", "json").stdout)["status"]["storedVersions"]
    return versions


def operator_pods_ready(apps: client.AppsV1Api, namespace: str, image: str, replicas: int) -> bool:
    (deployment,) = apps.list_namespaced_deployment(namespace).items
    status = deployment.status
    return bool(
        deployment.spec.template.spec.containers[0].image == image
        and (status.updated_replicas or 0) == replicas
        and (status.ready_replicas or 0) == replicas
        and (status.replicas or 0) == replicas  # the previous release's pod gone
    )


def hand_written_executor_rbac(kube: client.ApiClient, runner_ns: str, jobs_ns: str) -> str:
    """A ServiceAccount for the manager pods and, in the job namespace, a Role with what gitlab-runner's kubernetes
    executor documents for these settings (docs/operations/jobs.md; the operator checks a user's own account against
    it: the smallest set that runs a job, pods and pods/attach|exec create only, is ExecutorForbidden); its name."""
    account = "builds-executor"
    client.CoreV1Api(kube).create_namespaced_service_account(
        runner_ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=account))
    )
    rbac = client.RbacAuthorizationV1Api(kube)
    rules = [
        client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["create", "get", "delete", "list", "watch"]),
        client.V1PolicyRule(
            api_groups=[""], resources=["pods/attach", "pods/exec"], verbs=["create", "delete", "get", "patch"]
        ),
        client.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["create", "delete", "get", "update"]),
        client.V1PolicyRule(api_groups=[""], resources=["events"], verbs=["list"]),
        client.V1PolicyRule(api_groups=[""], resources=["serviceaccounts"], verbs=["get"]),
        client.V1PolicyRule(api_groups=[""], resources=["services"], verbs=["create", "get"]),
    ]
    rbac.create_namespaced_role(jobs_ns, client.V1Role(metadata=client.V1ObjectMeta(name=account), rules=rules))
    rbac.create_namespaced_role_binding(
        jobs_ns,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=account),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=account),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=account, namespace=runner_ns)],
        ),
    )
    return account


def manager_logs(cp: ControlPlane, namespace: str) -> str:
    """The manager pods' log lines but their idle polls: what they did with a job."""
    lines = []
    for pod in cp.kubectl("get", "pods", "-n", namespace, "-o", "name").stdout.split():
        log = cp.kubectl("logs", "-n", namespace, pod, check=False).stdout
        lines += [f"{pod}: {line}" for line in log.splitlines() if "Checking for jobs... ok" not in line]
    return "\n".join(lines[-80:])


def job_report(exc: Exception, cp: ControlPlane, namespace: str, fake: FakeGitLab, job_id: int) -> str:
    return f"{exc}\n{manager_logs(cp, namespace)}\ntrace: {jobs.trace(fake, job_id)}"


def pod_template(apps: client.AppsV1Api, namespace: str, name: str) -> dict[str, Any]:
    template: dict[str, Any] = apps.api_client.sanitize_for_serialization(
        apps.read_namespaced_stateful_set(name, namespace).spec.template
    )
    return template


def differences(before: Any, after: Any, path: str = "") -> list[str]:
    """The paths where two JSON values differ (lists compared whole)."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [d for k in sorted({*before, *after}) for d in differences(before.get(k), after.get(k), f"{path}.{k}")]
    return [] if before == after else [path or "."]


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


@pytest.mark.timeout(1200)
def test_helm_upgrade_from_the_previous_release_with_a_job_running(
    control_plane: ControlPlane,
    kube: client.ApiClient,
    node: Node,
    gitlab: FakeGitLab,  # noqa: F811 -- the fixture on the node's gateway
    images: None,  # noqa: F811 -- the example's images, tagged in the node
    previous_image: str,
    previous_storage: list[str],
    tmp_path: Path,
) -> None:
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    custom = client.CustomObjectsApi(kube)
    suffix = secrets.token_hex(3)
    system_ns, runner_ns, jobs_ns = f"glrt-up-{suffix}", f"ci-up-{suffix}", f"ci-up-jobs-{suffix}"
    for ns, accepting in ((system_ns, {}), (runner_ns, {}), (jobs_ns, {"glrt.dev/accept-from": runner_ns})):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns, annotations=accepting)))
    deployer = gitlab.add_user("deployer")
    gitlab.add_project_member(PROJECT_ID, deployer, "maintainer")
    gitlab.add_access_token(DEPLOY_PAT, deployer, scopes=["api"])
    every_ns = [system_ns, runner_ns, jobs_ns]

    # --- the previous release, as its users installed it ---------------------------------------------------------
    settings = {**TEST_SETTINGS, "resyncInterval": 5}
    previous_values = {
        "image": {"repository": PREVIOUS_IMAGE.split(":", maxsplit=1)[0], "tag": "previous", "pullPolicy": "Never"},
        "settings": settings,
    }  # cluster-wide, one replica: that release's defaults
    (tmp_path / "previous.yaml").write_text(yaml.safe_dump(previous_values))
    chart = previous_chart(tmp_path / "previous")
    assert (chart / "crds").is_dir() and not (chart / "templates" / "crds.yaml").exists()  # the release it claims
    # --skip-crds: the CRDs are there already, storing v1alpha1 as that release's did (`previous_storage`); its
    # crds/ would not fit over the session's (Helm 4 applies crds/ server-side, and they lack v1beta1).
    installed = control_plane.helm(
        "install", RELEASE, str(chart), "-n", system_ns, "--skip-crds", "--values", str(tmp_path / "previous.yaml")
    )
    try:
        wait_on(
            node,
            every_ns,
            lambda: operator_pods_ready(apps, system_ns, PREVIOUS_IMAGE, 1),
            "the previous release's operator pod Ready",
        )
        (deployment,) = apps.list_namespaced_deployment(system_ns).items
        assert deployment.spec.strategy.type == "Recreate"
        del installed

        runners = Runners(kube, runner_ns, gitlab.url)
        runners.put_secret("gitlab-api", {"token": PAT})
        runners.put_secret("gitlab-deploy", {"token": DEPLOY_PAT})
        example = yaml.safe_load(previous_file("examples/runner.yaml"))
        assert example["apiVersion"] == f"{GROUP}/{OLD}"
        example["metadata"]["namespace"] = runner_ns
        example["spec"]["gitlab"]["url"] = gitlab.url
        example["spec"]["config"]["kubernetes"]["namespace"] = jobs_ns
        example["spec"]["config"]["checkInterval"] = 1
        # That release ran manager pods as the namespace's default account unless told otherwise (the executor's
        # RBAC owned by the operator came after it): its users wrote the executor's account and Role by hand.
        example["spec"]["manager"]["serviceAccountName"] = hand_written_executor_rbac(kube, runner_ns, jobs_ns)
        token_example = yaml.safe_load(previous_file("examples/deploytoken.yaml"))
        token_example["metadata"]["namespace"] = runner_ns
        token_example["spec"]["gitlab"] = {"url": gitlab.url, "credentialsSecretRef": {"name": "gitlab-deploy"}}
        for manifest in (example, token_example):
            control_plane.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        name, token_name = example["metadata"]["name"], token_example["metadata"]["name"]
        before = runners.wait_ready(name, timeout=180)["status"]
        runner_id = int(before["runnerId"])

        def deploy_token() -> dict[str, Any]:
            body: dict[str, Any] = custom.get_namespaced_custom_object(
                GROUP, VERSION, runner_ns, "deploytokens", token_name
            )
            return body

        wait_on(node, every_ns, lambda: ready_for_generation(deploy_token()), "the DeployToken Ready", timeout=120)
        wait_on(node, every_ns, lambda: len(polling_managers(gitlab, runner_id)) == 2, "both managers poll", 180)
        for plural, obj in (("runners", name), ("deploytokens", token_name)):
            assert control_plane.stored_api_version(GROUP, plural, runner_ns, obj) == f"{GROUP}/{OLD}"
        for crd in previous_storage:
            assert OLD in stored_versions(control_plane, crd)

        managers = set(gitlab.runners[runner_id].managers)
        pods = {p.metadata.name: p.metadata.uid for p in core.list_namespaced_pod(runner_ns).items}
        template = pod_template(apps, runner_ns, name)
        runner_token = fingerprint(runners.secret_data(f"{name}-runner-token")["token"])
        deploy_tokens = sorted(t.id for t in gitlab.deploy_tokens())
        assert len(pods) == 2 and len(managers) == 2 and len(deploy_tokens) == 1

        # --- a 120 s job, taken by one of the manager pods ------------------------------------------------------
        marker = f"upgrade-job-{secrets.token_hex(4)}"
        job_id = gitlab.enqueue_job(
            runner_id=runner_id,
            tags=example["spec"]["tags"],
            payload=jobs.script_job([f"echo {marker}-start", f"sleep {JOB_SECONDS}", f"echo {marker}-end"]),
        )
        try:
            wait_for(lambda: job_id in {j for j, *_ in gitlab.assigned_jobs}, timeout=60, message="the job taken")
            wait_for(
                lambda: any(p.status.phase == "Running" for p in core.list_namespaced_pod(jobs_ns).items),
                timeout=120,
                message="the job pod running",
            )
        except TimeoutError as exc:
            raise AssertionError(
                f"{exc}\n{manager_logs(control_plane, runner_ns)}\n{jobs.trace(gitlab, job_id)}"
            ) from None
        job_started = time.monotonic()

        # --- the upgrade, as docs/operations/install.md says it --------------------------------------------------
        for crd in glrt_crds(control_plane):
            control_plane.kubectl("label", "crd", crd["metadata"]["name"], "app.kubernetes.io/managed-by=Helm")
            control_plane.kubectl(
                "annotate",
                "crd",
                crd["metadata"]["name"],
                f"meta.helm.sh/release-name={RELEASE}",
                f"meta.helm.sh/release-namespace={system_ns}",
            )
        values = {
            "image": {"repository": "localhost/glrt-operator", "tag": "test", "pullPolicy": "Never"},
            "settings": settings,
        }  # replicaCount, crds.install, crds.keep: this chart's defaults (2, true, true)
        (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
        upgrading = time.monotonic()
        # --force-conflicts: the CRDs' fields belong to whoever applied them before (here `kubectl patch`; for that
        # release's users `kubectl apply --server-side`, its upgrade path): Helm 4's server-side apply takes them over.
        upgrade = ["upgrade", RELEASE, str(CHART), "-n", system_ns, "--force-conflicts"]
        control_plane.helm(*upgrade, "--values", str(tmp_path / "values.yaml"))
        wait_on(
            node,
            every_ns,
            lambda: operator_pods_ready(apps, system_ns, "localhost/glrt-operator:test", 2),
            "both new operator pods Ready, the previous one gone",
            timeout=180,
        )
        rolled = time.monotonic() - upgrading
        for crd in previous_storage:  # the new operator's storage migration, at its start
            wait_on(node, every_ns, lambda c=crd: stored_versions(control_plane, c) == [VERSION], f"{crd} migrated")
        for plural, obj in (("runners", name), ("deploytokens", token_name)):
            assert control_plane.stored_api_version(GROUP, plural, runner_ns, obj) == f"{GROUP}/{VERSION}"

        try:
            result = wait_for(lambda: jobs.results(gitlab).get(job_id), timeout=300, message="the job's result")
        except TimeoutError as exc:
            raise AssertionError(
                f"{exc}\n{manager_logs(control_plane, runner_ns)}\n{jobs.trace(gitlab, job_id)}"
            ) from None
        assert result == {"state": "success", "failure_reason": ""}, jobs.trace(gitlab, job_id)
        assert f"{marker}-end" in jobs.trace(gitlab, job_id)
        # Ready for the new operator too: it reconciled the generation the previous one left (no edit in between).
        try:
            after = runners.wait_ready(name, timeout=60)["status"]
        except TimeoutError as exc:
            raise AssertionError(f"{exc}: {runners.get(name)['status']}") from None
        assert ready_for_generation(deploy_token())

        # --- what GitLab and the pods saw ---------------------------------------------------------------------
        assert gitlab.runner_ids() == [runner_id] and int(after["runnerId"]) == runner_id
        rotations = [c for c in gitlab.calls if c.method == "POST" and c.path.endswith("/reset_authentication_token")]
        assert rotations == [], "no token rotated"
        assert fingerprint(runners.secret_data(f"{name}-runner-token")["token"]) == runner_token
        assert set(gitlab.runners[runner_id].managers) == managers, "no manager added"
        assert sorted(t.id for t in gitlab.deploy_tokens()) == deploy_tokens, "no deploy token created"
        now_pods = {p.metadata.name: p.metadata.uid for p in core.list_namespaced_pod(runner_ns).items}
        now_template = pod_template(apps, runner_ns, name)
        restarted = sorted(p for p, uid in pods.items() if now_pods.get(p) != uid)
        changed = differences(template, now_template)
        # A manager pod is replaced only when the pod template the operator renders for it changed.
        assert not restarted or changed, (restarted, template, now_template)
        assert sum(restart_counts(core, runner_ns).values()) == 0
        print(
            f"\nupgrade figures: helm upgrade to both new operator pods Ready in {rolled:.1f} s; the {JOB_SECONDS} s "
            f"job ended success {time.monotonic() - job_started:.1f} s after it started; runner {runner_id} kept, "
            f"0 rotations, {len(managers)} managers kept, 1 deploy token kept; manager pods replaced: "
            f"{restarted or 'none'} (pod template changes: {changed or 'none'}); objects stored as {VERSION}"
        )
    finally:
        with contextlib.suppress(Exception):
            control_plane.kubectl("delete", "runners.glrt.dev,deploytokens.glrt.dev", "--all", "-n", runner_ns,
                                  "--timeout=120s", check=False)  # fmt: skip
        control_plane.helm("uninstall", RELEASE, "-n", system_ns, "--wait", check=False)
        for ns in every_ns:
            with contextlib.suppress(client.ApiException):
                core.delete_namespace(ns, propagation_policy="Background")
