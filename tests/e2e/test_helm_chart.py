"""The Helm chart: lint, schema, rendering, and the operator running as the chart's ServiceAccount.

The chart is installed with the real helm into the real kube-apiserver, once per RBAC mode (cluster-wide and
namespaced). No kubelet runs its pod, so the operator runs here as a process with the Deployment's own args and
env and the ServiceAccount's real token: every call it makes goes through the chart's RBAC, and a rule too few
fails the Runner lifecycle, a rule too many fails the denial checks.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client

from glrt_operator.core.api import KINDS, VERSION
from tests.conftest import REPO_ROOT
from tests.e2e import test_deploy_tokens as deploy_tokens
from tests.e2e.conftest import PAT, PROJECT_ID, Runners, assert_no_secrets, assert_same_token
from tests.fake_gitlab import FakeGitLab
from tests.harness import binaries
from tests.harness.controlplane import ControlPlane
from tests.harness.operator import OperatorProcess
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster

CHART = REPO_ROOT / "helm" / "glrt-operator"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
SCHEMA_ERROR = "values don't meet the specifications of the schema(s)"
# Short timers, set through the chart's values: the operator then reads them from the Deployment's env.
TEST_SETTINGS = {"resyncInterval": 3, "errorBackoff": 0.5, "errorBackoffMax": 4, "watchServerTimeout": 60}


# --- rendering without a cluster ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("helm")
    return {f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}


def helm(home: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(binaries.binary("helm")), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **home},
    )
    if check:
        assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def render(home: dict[str, str], *args: str) -> list[dict[str, Any]]:
    out = helm(home, "template", "glrt", str(CHART), "--namespace", "glrt-system", *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def kinds(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        found.setdefault(doc["kind"], []).append(doc)
    return found


def the_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = kinds(docs)["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda v: v.name if v else "defaults")
def test_lint_passes(helm_home: dict[str, str], values: Path | None) -> None:
    extra = ["--values", str(values)] if values else []
    result = helm(helm_home, "lint", "--strict", str(CHART), *extra)
    assert "0 chart(s) failed" in result.stdout


def test_ci_scenarios_exist() -> None:
    assert {p.name for p in CI_VALUES} >= {"cluster-wide.yaml", "namespaced.yaml", "custom-image-resources.yaml"}


def test_every_value_is_documented_and_in_the_schema() -> None:
    """bitnami style: each value has a `## @param` line, and the schema knows it (it refuses unknown keys)."""
    text = (CHART / "values.yaml").read_text()
    params = {line.split()[2] for line in text.splitlines() if line.strip().startswith("## @param ")}
    schema = json.loads((CHART / "values.schema.json").read_text())
    undocumented: list[str] = []

    def walk(values: dict[str, Any], node: dict[str, Any], prefix: str) -> None:
        for key, value in values.items():
            path = f"{prefix}{key}"
            assert key in node.get("properties", {}), f"{path} is not in values.schema.json"
            if path in params:
                params.discard(path)
            elif isinstance(value, dict) and value:
                walk(value, node["properties"][key], f"{path}.")
            else:
                undocumented.append(path)

    walk(yaml.safe_load(text), schema, "")
    assert not undocumented, f"values without a ## @param line: {undocumented}"
    assert not params, f"## @param lines for values that do not exist: {sorted(params)}"


def test_default_render_is_one_restricted_operator(helm_home: dict[str, str]) -> None:
    docs = render(helm_home)
    (deployment,) = kinds(docs)["Deployment"]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    container = the_container(docs)

    # Two replicas, one active through the Lease: a rollout starts the new pod (a standby) before stopping one.
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert pod["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == "glrt-glrt-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert container["image"] == f"glrt-operator:{chart['appVersion']}"
    assert container["args"] == [
        "run",
        "--all-namespaces",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--leader-election=glrt-system/glrt-glrt-operator-leader",
    ]
    # Both probes ask Kopf's own endpoint, on the port the --liveness argument serves.
    assert container["ports"] == [
        {"name": "health", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 8081, "protocol": "TCP"},
    ]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {
        "name": "POD_NAME",
        "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
    } in container["env"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert env == {
        "GLRT_RESYNC_INTERVAL": "300",
        "GLRT_ERROR_BACKOFF": "15",
        "GLRT_ERROR_BACKOFF_MAX": "600",
        "GLRT_WATCH_SERVER_TIMEOUT": "300",
        "GLRT_METRICS_PORT": "8081",
        "GLRT_GITLAB_REQUESTS_PER_MINUTE": "600",
        "GLRT_GITLAB_CONCURRENCY": "8",
        "GLRT_WORKERS": "16",
        "GLRT_RESYNC_WORKERS": "4",
        "GLRT_BATCH_READS": "true",
        "GLRT_BATCH_READ_TTL": "60",
        "GLRT_RESYNC_BUDGET_SHARE": "0.1",
        "GLRT_WATCH_CACHES": "false",
        "GLRT_OWN_SECRET_RECHECK": "21600",
        "GLRT_SECRET_READ_TTL": "60",
        "GLRT_EXECUTOR_CLUSTER_ROLE": "glrt-glrt-operator-glrt-system-executor",
        "GLRT_PIN_POD_IDS": "true",
        "GLRT_CONNECTION_NAMESPACE": "glrt-system",
        "GLRT_REFUSE_INLINE_CONNECTIONS": "false",
    }
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


@pytest.mark.parametrize(
    "args",
    [["--api-versions", "security.openshift.io/v1"], ["--set", "compatibility.openshift.adaptSecurityContext=force"]],
    ids=["openshift-detected", "forced"],
)
def test_on_openshift_the_platform_assigns_the_ids(helm_home: dict[str, str], args: list[str]) -> None:
    docs = render(helm_home, *args)
    pod = kinds(docs)["Deployment"][0]["spec"]["template"]["spec"]
    container = the_container(docs)
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert not {"runAsUser", "runAsGroup"} & set(container["securityContext"])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True  # the rest stays
    assert {"name": "GLRT_PIN_POD_IDS", "value": "false"} in container["env"]


def test_adapting_can_be_switched_off_on_openshift(helm_home: dict[str, str]) -> None:
    docs = render(
        helm_home,
        "--api-versions",
        "security.openshift.io/v1",
        "--set",
        "compatibility.openshift.adaptSecurityContext=disabled",
    )
    assert kinds(docs)["Deployment"][0]["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001
    assert {"name": "GLRT_PIN_POD_IDS", "value": "true"} in the_container(docs)["env"]


def watch_rbac(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The rendered objects by kind, without the leader election's Role and RoleBinding (in the release namespace
    whatever the mode; test_high_availability checks them)."""
    return kinds([d for d in docs if not d["metadata"]["name"].endswith("-leader-election")])


def operator_roles(rendered: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The ClusterRoles the operator holds (not the executor's, which it may only bind)."""
    return [r for r in rendered.get("ClusterRole", []) if "-executor" not in r["metadata"]["name"]]


def strip_connection_rbac(rendered: dict[str, list[dict[str, Any]]], namespace: str) -> None:
    """Both modes: a ClusterRole on ClusterGitLabConnections (cluster-scoped) and a Role on Secrets in the connection
    namespace only. Checked, then removed, so that the rest is each mode's own RBAC."""
    (connections,) = [r for r in rendered["ClusterRole"] if r["metadata"]["name"].endswith("-connections")]
    assert {r for rule in connections["rules"] for r in rule["resources"]} == {
        "clustergitlabconnections",
        "clustergitlabconnections/status",
    }
    (secrets_role,) = [r for r in rendered["Role"] if r["metadata"]["name"].endswith("-connection-secrets")]
    assert secrets_role["metadata"]["namespace"] == namespace
    assert secrets_role["rules"][0] == {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "patch"]}
    for kind, name in (
        ("ClusterRole", connections["metadata"]["name"]),
        ("ClusterRoleBinding", connections["metadata"]["name"]),
        ("Role", secrets_role["metadata"]["name"]),
        ("RoleBinding", secrets_role["metadata"]["name"]),
    ):
        kept = [r for r in rendered[kind] if r["metadata"]["name"] != name]
        assert len(kept) == len(rendered[kind]) - 1
        if kept:
            rendered[kind] = kept
        else:
            del rendered[kind]


def test_ci_scenarios_render_the_rbac_of_their_mode(helm_home: dict[str, str]) -> None:
    cluster = watch_rbac(render(helm_home, "--values", str(CHART / "ci" / "cluster-wide.yaml")))
    namespaced = watch_rbac(render(helm_home, "--values", str(CHART / "ci" / "namespaced.yaml")))
    for rendered in (cluster, namespaced):
        strip_connection_rbac(rendered, "glrt-system")
    assert len(operator_roles(cluster)) == len(cluster["ClusterRoleBinding"]) == 1
    assert "Role" not in cluster and "RoleBinding" not in cluster

    # Cluster-wide only the read of the watched namespaces by name (do they accept another's Runners?).
    (namespaces,) = operator_roles(namespaced)
    assert namespaces["rules"] == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"], "resourceNames": ["ci", "team-a"]}
    ]
    assert [b["roleRef"]["name"] for b in namespaced["ClusterRoleBinding"]] == [namespaces["metadata"]["name"]]
    assert sorted(r["metadata"]["namespace"] for r in namespaced["Role"]) == ["ci", "team-a"]
    assert sorted(b["metadata"]["namespace"] for b in namespaced["RoleBinding"]) == ["ci", "team-a"]
    for binding in namespaced["RoleBinding"]:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "glrt-glrt-operator", "namespace": "glrt-system"}
        ]
    # The same rules in both modes: only where they are bound differs (and, cluster-wide, reading namespaces and
    # the storage migration at start: docs/operations/api-versions.md).
    (cluster_role,) = operator_roles(cluster)
    shared = len(namespaced["Role"][0]["rules"])
    assert namespaced["Role"][0]["rules"] == cluster_role["rules"][:shared]
    crds = ["runners.glrt.dev", "deploytokens.glrt.dev"]
    assert cluster_role["rules"][shared:] == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
        {"apiGroups": ["glrt.dev"], "resources": ["runners", "deploytokens"], "verbs": ["update"]},
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["get"],
            "resourceNames": crds,
        },
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions/status"],
            "verbs": ["patch"],
            "resourceNames": crds,
        },
    ]
    granted = {(res, verb) for rule in cluster_role["rules"] for res in rule["resources"] for verb in rule["verbs"]}
    for resource, verb in [
        ("deploytokens", "watch"),
        ("deploytokens", "patch"),
        ("deploytokens/status", "patch"),
        ("deploytokens/finalizers", "update"),
        ("secrets", "create"),
    ]:
        assert (resource, verb) in granted, f"the operator cannot {verb} {resource}"
    args = the_container(namespaced["Deployment"])["args"]
    assert args[:3] == ["run", "--namespace=ci", "--namespace=team-a"] and "--all-namespaces" not in args

    custom = render(helm_home, "--values", str(CHART / "ci" / "custom-image-resources.yaml"))
    container = the_container(custom)
    assert container["image"].startswith("registry.example.com/platform/glrt-operator@sha256:")
    assert container["imagePullPolicy"] == "Always" and "--verbose" in container["args"]
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    assert "ServiceAccount" not in kinds(custom)
    (deployment,) = kinds(custom)["Deployment"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "glrt-operator"
    assert deployment["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "registry-credentials"}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "replicaCount=0"], "at '/replicaCount': minimum: got 0, want 1"),
        (["--set-json", 'watch.namespaces=["Bad_NS"]'], "'Bad_NS' does not match pattern"),
        (["--set-json", 'watch.namespaces=["ci","ci"]'], "at '/watch/namespaces': items at 0 and 1 are equal"),
        (["--set", "image.pullPolicy=Sometimes"], "value must be one of 'Always', 'IfNotPresent', 'Never'"),
        (["--set", "settings.resyncInterval=-1"], "at '/settings/resyncInterval': minimum: got -1, want 1"),
        # A typo must not silently fall back to the cluster-wide default.
        (["--set-json", 'watch.namespace=["ci"]'], "additional properties 'namespace' not allowed"),
    ],
    ids=["replicas", "namespace-name", "duplicate-namespace", "pull-policy", "negative-interval", "typo"],
)
def test_schema_refuses_bad_values(helm_home: dict[str, str], args: list[str], message: str) -> None:
    result = helm(helm_home, "template", "glrt", str(CHART), *args, check=False)
    assert result.returncode != 0
    assert SCHEMA_ERROR in result.stderr and message in result.stderr, result.stderr


def test_backoff_above_its_cap_is_refused(helm_home: dict[str, str]) -> None:
    result = helm(helm_home, "template", "glrt", str(CHART), "--set", "settings.errorBackoff=700", check=False)
    assert result.returncode != 0
    assert "settings.errorBackoff must not exceed settings.errorBackoffMax" in result.stderr


CHART_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping with a key twice (PyYAML would keep the last one silently)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys = [loader.construct_object(k) for k, _ in node.value]
    assert len(keys) == len(set(keys)), f"a key twice at line {node.start_mark.line + 1}: {keys}"
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


@pytest.mark.parametrize("field", ["commonLabels", "podLabels"])
@pytest.mark.parametrize("key", CHART_LABELS)
def test_labels_the_chart_sets_itself_are_refused_naming_the_key(
    helm_home: dict[str, str], field: str, key: str
) -> None:
    """The chart's selector labels must win (issue #27): values that set them fail loudly, naming the key, in the
    schema (helm lint --strict, template, install) and in the template when the schema is skipped."""
    value = ["--set", f"{field}.{key.replace('.', chr(92) + '.')}=mine"]
    for command in (["template", "glrt"], ["lint", "--strict"]):
        result = helm(helm_home, *command, str(CHART), *value, check=False)
        assert result.returncode != 0 and f"invalid propertyName '{key}'" in result.stdout + result.stderr
    skipped = helm(helm_home, "template", "glrt", str(CHART), "--skip-schema-validation", *value, check=False)
    assert skipped.returncode != 0
    assert f'{field}: label "{key}" is set by the chart itself' in skipped.stderr, skipped.stderr


def test_user_labels_keep_the_selector_and_never_repeat_a_key(helm_home: dict[str, str]) -> None:
    out = helm(
        helm_home,
        "template",
        "glrt",
        str(CHART),
        "--set",
        "commonLabels.team=platform",
        "--set",
        "podLabels.team=operators",
        "--set",
        "podLabels.tier=control",
        "--set",
        "metrics.serviceMonitor.enabled=true",
    ).stdout
    docs = [d for d in yaml.load_all(out, Loader=_UniqueKeyLoader) if d]
    (deployment,) = kinds(docs)["Deployment"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector == {"app.kubernetes.io/name": "glrt-operator", "app.kubernetes.io/instance": "glrt"}
    assert selector.items() <= pod_labels.items()
    assert pod_labels["team"] == "operators" and pod_labels["tier"] == "control"  # podLabels win over commonLabels
    for doc in docs:
        assert doc["metadata"]["labels"]["team"] == "platform", doc["kind"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_the_rbac_comment_in_values_lists_exactly_what_the_chart_grants(helm_home: dict[str, str]) -> None:
    """values.yaml says which rules rbac.create grants, for those who grant them by hand: it must be the truth."""
    text = (CHART / "values.yaml").read_text()
    start = text.index("## The rules (templates/_helpers.tpl")
    comment = " ".join(
        line.strip().removeprefix("##") for line in text[start:].splitlines()[1:] if "In cluster mode" not in line
    ).split("  create:")[0]
    comment = " ".join(comment.split())  # one space wherever a line broke
    said = {
        (resource, verb)
        for resources, verbs in re.findall(r"((?:[a-z/]+(?:, )?)+) \(([a-z, ]+)(?::[^)]*)?\)", comment)
        for resource in resources.split(", ")
        for verb in verbs.split(", ")
    }
    roles = kinds(render(helm_home))["ClusterRole"]
    (role,) = [r for r in roles if r["metadata"]["name"] == "glrt-glrt-operator-glrt-system"]  # not the executor's
    granted = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert said == granted, f"said, not granted: {sorted(said - granted)}; granted, not said: {sorted(granted - said)}"


# --- installed into the real apiserver ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Install:
    mode: str
    release: str
    namespace: str  # the release namespace, where the operator runs
    watched: tuple[str, ...]  # empty: the whole cluster
    manifest: list[dict[str, Any]]
    kubeconfig: Path  # the chart's ServiceAccount, with a real token

    @property
    def container(self) -> dict[str, Any]:
        return the_container(self.manifest)


def create_namespace(kube: client.ApiClient, prefix: str) -> str:
    name = f"{prefix}-{secrets.token_hex(3)}"
    client.CoreV1Api(kube).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


@pytest.fixture(scope="module", params=["cluster", "namespaced"])
def install(
    request: pytest.FixtureRequest,
    control_plane: ControlPlane,
    kube: client.ApiClient,
    crd_installed: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Install]:
    """One `helm install` per RBAC mode, shared by that mode's tests."""
    mode: str = request.param
    namespace = create_namespace(kube, f"glrt-{mode}")
    watched = tuple(create_namespace(kube, f"watched-{i}") for i in range(2)) if mode == "namespaced" else ()
    values = tmp_path_factory.mktemp(mode) / "values.yaml"
    # crds.install=false: the session's CRDs are not this release's (test_chart_crds_upgrade_with_the_release).
    values.write_text(
        yaml.safe_dump({"watch": {"namespaces": list(watched)}, "settings": TEST_SETTINGS, "crds": {"install": False}})
    )
    release = f"glrt-{mode}"
    control_plane.helm("install", release, str(CHART), "--namespace", namespace, "--values", str(values))
    manifest = control_plane.helm("get", "manifest", release, "--namespace", namespace).stdout
    docs = [doc for doc in yaml.safe_load_all(manifest) if doc]
    (account,) = kinds(docs)["ServiceAccount"]
    kubeconfig = control_plane.serviceaccount_kubeconfig(namespace, account["metadata"]["name"])
    try:
        yield Install(mode, release, namespace, watched, docs, kubeconfig)
    finally:
        control_plane.helm("uninstall", release, "--namespace", namespace, check=False)
        core = client.CoreV1Api(kube)
        for name in (namespace, *watched):
            core.delete_namespace(name, propagation_policy="Background")


@pytest.mark.oldest_kubernetes
def test_helm_installed_what_the_mode_needs(control_plane: ControlPlane, install: Install) -> None:
    status = json.loads(control_plane.helm("status", install.release, "-n", install.namespace, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    notes = status["info"]["notes"]
    assert "create secret generic gitlab-api" in notes and "get runners -w" in notes
    assert f"-n {install.watched[0] if install.watched else 'ci'} get runners -w" in notes
    rbac = watch_rbac(install.manifest)
    strip_connection_rbac(rbac, install.namespace)
    if install.watched:
        assert sorted(r["metadata"]["namespace"] for r in rbac["RoleBinding"]) == sorted(install.watched)
        # Cluster-wide only the read of the watched namespaces by name, and the executor's roles (bound per Runner).
        (binding,) = rbac["ClusterRoleBinding"]
        assert binding["roleRef"]["name"].endswith("-namespaces")
        assert [r["metadata"]["name"] for r in operator_roles(rbac)] == [binding["roleRef"]["name"]]
    else:
        assert "Role" not in rbac and len(rbac["ClusterRoleBinding"]) == 1
    # The Deployment exists in the apiserver as rendered (its pod never starts: there is no kubelet).
    deployment = control_plane.kubectl("get", "deployment", "-n", install.namespace, "-o", "json").stdout
    (item,) = json.loads(deployment)["items"]
    assert item["spec"]["template"]["spec"]["containers"][0]["args"] == install.container["args"]


@pytest.mark.oldest_kubernetes
@pytest.mark.parametrize("values", CI_VALUES, ids=lambda v: v.name)
def test_ci_scenarios_are_accepted_by_the_apiserver(
    control_plane: ControlPlane, kube: client.ApiClient, values: Path
) -> None:
    """Server-side dry run: the apiserver validates every object of each scenario (schemas, quantities, names)."""
    namespace = create_namespace(kube, "dry-run")
    try:
        extra = ["--values", str(values)]
        if yaml.safe_load(values.read_text()).get("watch", {}).get("namespaces"):
            extra += ["--set-json", f'watch.namespaces=["{namespace}"]']  # its Roles need an existing namespace
        rendered = control_plane.helm("template", "glrt", str(CHART), "--namespace", namespace, *extra).stdout
        result = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
        assert "deployment.apps/glrt-glrt-operator created (server dry run)" in result.stdout
    finally:
        client.CoreV1Api(kube).delete_namespace(namespace)


# --- the operator as the chart's ServiceAccount ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ChartOperator(OperatorProcess):
    """The operator with the args and env of the chart's Deployment (the liveness and metrics endpoints moved to
    free ports, plus --verbose: the harness waits for a debug line)."""

    def __init__(self, install: Install, log_dir: Path):
        container = install.container
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        env["POD_NAME"] = f"{install.release}-test"  # the Downward API's metadata.name, the replica's Lease identity
        super().__init__(install.kubeconfig, install.mode, log_dir, env)
        self.env["GLRT_METRICS_PORT"] = str(self.metrics_port)  # a free port, as for the liveness endpoint
        self.health_port = free_port()
        liveness = f"--liveness=http://127.0.0.1:{self.health_port}/healthz"
        self.args = [liveness if a.startswith("--liveness=") else a for a in container["args"]]
        if "--verbose" not in self.args:
            self.args.append("--verbose")

    def healthz(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=5) as response:
            status: int = response.status
            return status


def register_manager(gitlab: FakeGitLab, token: str, system_id: str) -> None:
    """What a runner manager pod does when it starts: GitLab files a manager under its system_id."""
    response = httpx.post(f"{gitlab.api_url}/runners/verify", json={"token": token, "system_id": system_id})
    assert response.status_code == 200, response.text


def test_operator_runs_a_runner_lifecycle_as_the_service_account(
    request: pytest.FixtureRequest,
    control_plane: ControlPlane,
    kube: client.ApiClient,
    install: Install,
    gitlab: FakeGitLab,
    tmp_path: Path,
) -> None:
    # Namespaced mode: a watched namespace. Cluster mode: any namespace at all.
    namespace = install.watched[0] if install.watched else request.getfixturevalue("namespace")
    runners = Runners(kube, namespace, gitlab.url)
    runners.put_secret("gitlab-api", {"token": PAT})
    operator = ChartOperator(install, tmp_path).start()
    try:
        assert operator.healthz() == 200

        runners.create(runners.manifest(replicas=2))
        status = runners.wait_ready()["status"]
        runner_id = status["runnerId"]
        token = runners.secret_data(status["tokenSecretName"])["token"]
        assert_same_token(token, gitlab.runners[runner_id].token, "token Secret vs GitLab")
        assert runners.apps.read_namespaced_stateful_set("builds", namespace).spec.replicas == 2
        # The executor's account, bound by the operator through the chart's RBAC: what jobs need where they run
        # (the Runner's namespace here), nothing elsewhere (asked of the API server).
        executor = f"system:serviceaccount:{namespace}:builds-runner"
        assert status["executor"] == {
            "namespace": namespace,
            "serviceAccount": "builds-runner",
            "roleBindings": [f"{namespace}/glrt.{namespace}.builds"],
        }
        for verb, what in [("create", "pods"), ("delete", "pods"), ("create", "pods/exec"), ("create", "pods/attach")]:
            assert (
                control_plane.kubectl(
                    "auth", "can-i", verb, what, "-n", namespace, f"--as={executor}", check=False
                ).stdout.strip()
                == "yes"
            ), (verb, what)
        for args in [
            ("create", "pods", "-n", install.namespace),
            ("create", "pods", "-n", "kube-system"),
            ("list", "secrets", "-n", namespace),
            ("create", "rolebindings", "-n", namespace),
        ]:
            answer = control_plane.kubectl("auth", "can-i", *args, f"--as={executor}", check=False).stdout.strip()
            assert answer == "no", args
        # Posted by the operator itself: proves the events rule (Kopf only logs a failed post).
        wait_for(lambda: "RunnerCreated" in runners.event_reasons(), timeout=10, message="RunnerCreated event")

        # Replica 1 has talked to GitLab; scaling it away makes the operator look for its pod, then remove it.
        system_id = runners.secret_data(status["configSecretName"])["system-id-1"].strip()
        register_manager(gitlab, token, system_id)
        runners.patch_spec(description="edited through the chart's RBAC", replicas=1)
        wait_for(
            lambda: gitlab.runners[runner_id].description == "edited through the chart's RBAC",
            timeout=30,
            message="description updated in GitLab",
        )
        runners.wait_ready()
        wait_for(
            lambda: system_id not in gitlab.runners[runner_id].managers,
            timeout=30,
            message="scaled-away manager removed",
        )
        assert runners.apps.read_namespaced_stateful_set("builds", namespace).spec.replicas == 1

        runners.delete()
        # Up to 60 s more when the deletion meets a resync timer still patching: Kopf then re-checks the timer
        # only after settings.background.cancellation_polling (60 s by default) before releasing the finalizer.
        wait_for(lambda: not runners.exists(), timeout=90, message="Runner gone")
        assert runner_id not in gitlab.runners
        rbac = client.RbacAuthorizationV1Api(kube)
        assert [
            b.metadata.name for b in rbac.list_namespaced_role_binding(namespace).items if "glrt." in b.metadata.name
        ] == []
    finally:
        operator.stop()
    output = operator.output()
    # A denied call is retried (handlers) or only logged (events): either way it is logged with the namespace in
    # the URL or the message. Other tests' Runners may be seen in cluster mode; only this namespace counts.
    denied = [line for line in output.splitlines() if namespace in line and "forbidden" in line.lower()]
    assert not denied, "\n".join(denied)
    assert_no_secrets(output, runners, gitlab)


def test_operator_runs_a_deploy_token_lifecycle_as_the_service_account(
    request: pytest.FixtureRequest, kube: client.ApiClient, install: Install, gitlab: FakeGitLab, tmp_path: Path
) -> None:
    namespace = install.watched[0] if install.watched else request.getfixturevalue("namespace")
    maintainer = gitlab.add_user(f"deploy-{install.mode}")
    gitlab.add_project_member(PROJECT_ID, maintainer, "maintainer")
    gitlab.add_access_token(deploy_tokens.PAT, maintainer, scopes=["api"])
    tokens = deploy_tokens.DeployTokens(kube, namespace, gitlab)
    tokens.put_secret("gitlab-deploy-api", {"token": deploy_tokens.PAT})
    body = tokens.manifest("pull-as-sa")
    body["spec"]["gitlab"]["credentialsSecretRef"]["name"] = "gitlab-deploy-api"
    operator = ChartOperator(install, tmp_path).start()
    try:
        tokens.create(body)
        status = tokens.wait_ready("pull-as-sa")["status"]
        token_id, username, value = tokens.credentials("pull-as-sa")
        assert status["tokenId"] == token_id and tokens.active("pull-as-sa") == [token_id]
        assert tokens.registry_accepts(username, value)
        wait_for(lambda: tokens.events("TokenCreated"), timeout=10, message="TokenCreated event")
        tokens.delete("pull-as-sa")
        wait_for(lambda: not tokens.active("pull-as-sa"), timeout=60, message="token revoked on delete")
    finally:
        operator.stop()
    output = operator.output()
    denied = [line for line in output.splitlines() if namespace in line and "forbidden" in line.lower()]
    assert not denied, "\n".join(denied)
    deploy_tokens.assert_no_secrets(output, tokens)


# --- what the ServiceAccount must not be able to do ---------------------------------------------------------------


def executor_role(install: Install) -> str:
    (role,) = [
        r["metadata"]["name"]
        for r in kinds(install.manifest).get("ClusterRole", [])
        if r["metadata"]["name"].endswith("-executor")
    ]
    return role


def test_the_executor_roles_are_the_permissions_the_operator_checks(helm_home: dict[str, str]) -> None:
    """The chart's executor ClusterRoles and the operator's permission groups (runners/executor.py) are the same."""
    from glrt_operator.runners.executor import RULES, cluster_role_name

    rendered = {r["metadata"]["name"]: r for r in kinds(render(helm_home))["ClusterRole"]}
    (base,) = [name for name in rendered if name.endswith("-executor")]
    for group, rules in RULES.items():
        role = rendered.pop(cluster_role_name(base, group))
        assert role["rules"] == [
            {"apiGroups": [r.api_group], "resources": [r.resource], "verbs": list(r.verbs)} for r in rules
        ], group
    assert [name for name in rendered if "-executor" in name] == []


def can_i(control_plane: ControlPlane, install: Install, *args: str) -> bool:
    result = control_plane.kubectl("auth", "can-i", *args, kubeconfig=install.kubeconfig, check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


@pytest.mark.oldest_kubernetes
def test_service_account_has_only_what_the_operator_uses(control_plane: ControlPlane, install: Install) -> None:
    watched = install.watched[0] if install.watched else "default"
    allowed = [
        ("patch", "runners.glrt.dev"),
        ("patch", "runners.glrt.dev", "--subresource=status"),
        ("get", "secrets"),
        ("create", "secrets"),
        ("delete", "secrets"),  # by name, a DeployToken's copies in other namespaces (no owner reference there)
        ("patch", "statefulsets.apps"),
        ("get", "pods"),
        ("list", "pods"),  # a Runner's pods by label: which replicas drain
        # The resyncs' watch caches of the children (label-selected: glrt.dev/runner), never of Secrets.
        ("watch", "pods"),
        ("watch", "statefulsets.apps"),
        ("watch", "serviceaccounts"),
        ("watch", "poddisruptionbudgets.policy"),
        ("watch", "rolebindings"),
        ("patch", "pods"),  # an annotation after a token rotation: the kubelet refreshes the Secret at once
        ("create", "events"),
        ("create", "rolebindings"),  # of the executor's ClusterRoles only (bind, below)
        ("delete", "rolebindings"),
        ("create", "serviceaccounts"),
        ("create", "poddisruptionbudgets.policy"),
        # Children are read before they are applied: applied only when they differ (no write at rest).
        ("get", "poddisruptionbudgets.policy"),
        ("get", "rolebindings"),
        ("create", "localsubjectaccessreviews.authorization.k8s.io"),
        ("bind", f"clusterroles/{executor_role(install)}"),
        ("bind", f"clusterroles/{executor_role(install)}-pod-logs"),
        ("patch", "deploytokens.glrt.dev"),
        ("patch", "deploytokens.glrt.dev", "--subresource=status"),
    ]
    for verb, *what in allowed:
        assert can_i(control_plane, install, verb, *what, "-n", watched), (verb, what)

    denied = [
        ("list", "secrets", "-n", watched),  # reads Secrets by name only: no enumerating tokens
        ("watch", "secrets", "-n", watched),
        ("delete", "statefulsets.apps", "-n", watched),  # children go by garbage collection
        ("delete", "runners.glrt.dev", "-n", watched),
        ("delete", "deploytokens.glrt.dev", "-n", watched),
        ("create", "pods", "-n", watched),
        ("delete", "pods", "-n", watched),  # pods stop only through the StatefulSet, always drained
        ("update", "pods", "-n", watched),
        ("create", "events.events.k8s.io", "-n", watched),
        # It binds the executor's permissions, never holds them.
        ("create", "pods/exec", "-n", watched),
        ("create", "pods/attach", "-n", watched),
        ("bind", "clusterroles/cluster-admin", "-n", watched),
        ("bind", "clusterroles/admin", "-n", watched),
        ("escalate", "clusterroles", "-n", watched),
        ("create", "roles", "-n", watched),
        ("create", "clusterrolebindings"),
        ("create", "clusterroles"),
        ("delete", "namespaces"),
        ("list", "namespaces"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ]
    if install.watched:
        # RBAC answers for namespaces it does not watch, whether or not they exist.
        # Its own namespace is the connection namespace (connections.secretNamespace): ClusterGitLabConnections'
        # Secrets are read and renewed there by name, nothing else.
        assert can_i(control_plane, install, "get", "secrets", "-n", install.namespace)
        assert can_i(control_plane, install, "patch", "secrets", "-n", install.namespace)
        denied += [
            ("list", "secrets", "-n", install.namespace),
            ("create", "secrets", "-n", install.namespace),
            ("delete", "secrets", "-n", install.namespace),
            ("get", "secrets", "-n", "kube-system"),
            ("patch", "runners.glrt.dev", "-n", "default"),
            ("list", "runners.glrt.dev", "--all-namespaces"),
        ]
    else:
        assert can_i(control_plane, install, "watch", "runners.glrt.dev", "--all-namespaces")
    # Both modes: ClusterGitLabConnections are watched and their status written, never created or deleted.
    for verb in ("watch", "get", "patch"):
        assert can_i(control_plane, install, verb, "clustergitlabconnections.glrt.dev")
    denied += [("create", "clustergitlabconnections.glrt.dev"), ("delete", "clustergitlabconnections.glrt.dev")]
    for check in denied:
        assert not can_i(control_plane, install, *check), check


def test_upgrade_rolls_new_settings_into_the_deployment(control_plane: ControlPlane, install: Install) -> None:
    control_plane.helm(
        "upgrade",
        install.release,
        str(CHART),
        "-n",
        install.namespace,
        "--reuse-values",
        "--set",
        "settings.verbose=true",
    )
    deployment = json.loads(control_plane.kubectl("get", "deployment", "-n", install.namespace, "-o", "json").stdout)[
        "items"
    ][0]
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [*install.container["args"], "--verbose"]
    assert container["env"] == install.container["env"]  # --reuse-values kept the test settings


def test_kube_version_is_the_oldest_tested_minor(helm_home: dict[str, str]) -> None:
    """Chart.yaml's kubeVersion admits the oldest minor `make compat` runs on, and refuses the one before it."""
    major, minor = binaries.minor_version(binaries.oldest_kubernetes_version())
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"] == f">={major}.{minor}.0-0"
    accepted = helm(helm_home, "template", "glrt", str(CHART), "--kube-version", binaries.oldest_kubernetes_version())
    assert "kind: Deployment" in accepted.stdout
    older = f"v{major}.{minor - 1}.0"
    refused = helm(helm_home, "template", "glrt", str(CHART), "--kube-version", older, check=False)
    assert refused.returncode != 0 and "chart requires kubeVersion" in refused.stderr, refused.stderr


# --- high availability and the CRDs as templates -----------------------------------------------------------------


def test_high_availability(helm_home: dict[str, str]) -> None:
    """replicaCount > 1: leader election through a Lease the chart's Role may get and update by name, a
    PodDisruptionBudget, RollingUpdate. replicaCount 1: none of it, and Recreate (never two operators)."""
    ha = kinds(render(helm_home, "--set", "replicaCount=3"))
    (deployment,) = ha["Deployment"]
    assert deployment["spec"]["replicas"] == 3 and deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "--leader-election=glrt-system/glrt-glrt-operator-leader" in the_container(ha["Deployment"])["args"]
    (role,) = [r for r in ha["Role"] if r["metadata"]["name"] == "glrt-glrt-operator-leader-election"]
    assert role["metadata"]["namespace"] == "glrt-system"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "update"],
            "resourceNames": ["glrt-glrt-operator-leader"],
        },
    ]
    (binding,) = [b for b in ha["RoleBinding"] if b["metadata"]["name"] == "glrt-glrt-operator-leader-election"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "glrt-glrt-operator", "namespace": "glrt-system"}]
    (budget,) = ha["PodDisruptionBudget"]
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]

    single = kinds(render(helm_home, "--set", "replicaCount=1"))
    (deployment,) = single["Deployment"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = the_container(single["Deployment"])
    assert not any(a.startswith("--leader-election") for a in container["args"])
    assert "POD_NAME" not in {e["name"] for e in container["env"]}
    assert "PodDisruptionBudget" not in single
    assert not [r for r in single.get("Role", []) if r["metadata"]["name"].endswith("-leader-election")]

    no_budget = kinds(render(helm_home, "--set", "podDisruptionBudget.enabled=false"))
    assert "PodDisruptionBudget" not in no_budget and no_budget["Deployment"][0]["spec"]["replicas"] == 2


def _crds(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "CustomResourceDefinition"}


def test_crds_are_templates_kept_on_uninstall(helm_home: dict[str, str]) -> None:
    """crds.install (default): the CRDs of crds/ rendered as they are, plus helm.sh/resource-policy: keep
    (crds.keep, default); crds.install=false renders none. Nothing in the chart's crds/ (Helm would install it
    once and never upgrade it, and the template's copy would clash with it)."""
    assert not (CHART / "crds").exists()
    rendered = _crds(render(helm_home))
    sources = {p.name.removesuffix(".yaml"): yaml.safe_load(p.read_text()) for p in (REPO_ROOT / "crds").glob("*.yaml")}
    assert sorted(rendered) == sorted(sources) == sorted(kind.crd_name for kind in KINDS)
    for name, crd in rendered.items():
        assert crd["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep"}
        labels = crd["metadata"].pop("labels")
        assert (
            labels["app.kubernetes.io/managed-by"] == "Helm"
            and labels.items() >= sources[name]["metadata"].pop("labels").items()
        )
        assert crd == sources[name], f"{name} rendered differs from crds/"
    unkept = _crds(render(helm_home, "--set", "crds.keep=false"))
    assert all("annotations" not in crd["metadata"] for crd in unkept.values()) and len(unkept) == len(KINDS)
    assert _crds(render(helm_home, "--set", "crds.install=false")) == {}


def _scratch_chart(tmp_path: Path, group: str, versions: str, *, legacy: bool) -> Path:
    """A chart holding only this chart's CRD template (or, `legacy`, the previous releases' crds/ directory) and
    the Runner CRD renamed to `group`: "previous" serves and stores v1alpha1 alone, "current" is crds/ as it is."""
    from tests.e2e.test_api_versions import _previous_release, _renamed

    chart = tmp_path / f"chart-{versions}-{'legacy' if legacy else 'templates'}"
    crd = _previous_release(group) if versions == "previous" else _renamed(group)
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(yaml.safe_dump({"apiVersion": "v2", "name": "crds-only", "version": "0.1.0"}))
    target = chart / ("crds" if legacy else "files/crds")
    target.mkdir(parents=True)
    (target / "runners.yaml").write_text(yaml.safe_dump(crd, sort_keys=False))
    if not legacy:  # the chart's own template, helpers and default values
        for part in ("values.yaml", "templates/crds.yaml", "templates/_helpers.tpl"):
            (chart / part).write_text((CHART / part).read_text())
    return chart


def test_chart_crds_upgrade_with_the_release(control_plane: ControlPlane, tmp_path: Path) -> None:
    """The previous releases' way (crds/: installed once, never upgraded) -> this chart's CRD template: the
    upgrade needs the CRD adopted into the release first (docs/operations/install.md); then `helm upgrade`
    upgrades the CRD, and `helm uninstall` leaves the CRD and the user's Runners in place."""
    from tests.e2e.test_api_versions import OLD, _runner, _stored_versions, _wait_served

    group = f"chart{secrets.token_hex(3)}.glrt.dev"
    release, ns = f"crds-{group.split('.', maxsplit=1)[0]}", "default"
    crd_name = f"runners.{group}"
    try:
        control_plane.helm("install", release, str(_scratch_chart(tmp_path, group, "previous", legacy=True)), "-n", ns)
        _wait_served(control_plane, group, OLD)
        control_plane.kubectl("apply", "-f", "-", input=_runner(group, OLD, "builds"))

        current = str(_scratch_chart(tmp_path, group, "current", legacy=False))
        refused = control_plane.helm("upgrade", release, current, "-n", ns, check=False)
        assert refused.returncode != 0 and "invalid ownership metadata" in refused.stderr, refused.stderr
        # The adoption of docs/operations/install.md, then the same upgrade.
        control_plane.kubectl("label", "crd", crd_name, "app.kubernetes.io/managed-by=Helm")
        control_plane.kubectl(
            "annotate", "crd", crd_name, f"meta.helm.sh/release-name={release}", f"meta.helm.sh/release-namespace={ns}"
        )
        control_plane.helm("upgrade", release, current, "-n", ns)
        crd = json.loads(control_plane.kubectl("get", "crd", crd_name, "-o", "json").stdout)
        assert [(v["name"], v["storage"]) for v in crd["spec"]["versions"]] == [(VERSION, True), (OLD, False)]
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert _stored_versions(control_plane, group) == [OLD, VERSION]

        uninstalled = control_plane.helm("uninstall", release, "-n", ns)
        assert crd_name in uninstalled.stdout + uninstalled.stderr  # Helm says what it kept
        assert control_plane.kubectl("get", "crd", crd_name, check=False).returncode == 0
        kept = control_plane.kubectl("get", f"runners.{VERSION}.{group}", "-n", ns, "-o", "name").stdout
        assert kept.split() == [f"runner.{group}/builds"]
    finally:
        control_plane.helm("uninstall", release, "-n", ns, check=False)
        control_plane.kubectl("delete", "crd", crd_name, "--ignore-not-found", "--timeout=60s", check=False)
