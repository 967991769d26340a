"""Connections end to end (control plane only, no pods): one ClusterGitLabConnection whose Secret lives in the
operator's connection namespace; a Runner and a DeployToken in two allowed team namespaces that hold no GitLab
credential; a third namespace, not allowed, gets ConnectionNotAllowed and causes no GitLab call."""

from __future__ import annotations

import base64
import contextlib
import re
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch

from glrt_operator.core.api import GROUP, VERSION
from tests.fake_gitlab import FakeGitLab, Fault
from tests.harness.controlplane import ControlPlane
from tests.harness.operator import OperatorProcess
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster

PAT = "glpat-e2e-ClusterConnection0001"
PROJECT_ID = 7


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab().running() as gl:
        owner = gl.add_user("platform")
        gl.add_group(3, "platform", owners=[owner])
        gl.add_project(PROJECT_ID, "builds", group_id=3, maintainers=[owner])
        gl.add_access_token(PAT, owner, scopes=["api"], expires_at=date.today() + timedelta(days=200), name="ops")
        yield gl


@pytest.fixture
def namespaces(kube: client.ApiClient) -> Iterator[dict[str, str]]:
    core = client.CoreV1Api(kube)
    suffix = secrets.token_hex(3)
    names = {role: f"conn-{role}-{suffix}" for role in ("ops", "team-a", "team-b", "team-c")}
    for name in names.values():
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield names
    for name in names.values():
        core.delete_namespace(name, propagation_policy="Background")


def status_of(custom: client.CustomObjectsApi, plural: str, namespace: str, name: str) -> dict[str, Any]:
    body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    return dict(body.get("status") or {})


def reason_of(status: dict[str, Any]) -> str | None:
    ready = next((c for c in status.get("conditions") or () if c["type"] == "Ready"), None)
    return ready["reason"] if ready else None


def test_cluster_connection_serves_allowed_namespaces_only(
    control_plane: ControlPlane,
    kube: client.ApiClient,
    crd_installed: list[str],
    gitlab: FakeGitLab,
    namespaces: dict[str, str],
    tmp_path: Path,
) -> None:
    core, custom = client.CoreV1Api(kube), client.CustomObjectsApi(kube)
    ops = namespaces["ops"]
    core.create_namespaced_secret(
        ops, client.V1Secret(metadata=client.V1ObjectMeta(name="gitlab-admin"), string_data={"token": PAT})
    )
    connection = f"main-{secrets.token_hex(3)}"
    custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        "clustergitlabconnections",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ClusterGitLabConnection",
            "metadata": {"name": connection},
            "spec": {
                "url": gitlab.url,
                "credentialsSecretRef": {"name": "gitlab-admin"},
                "allowedNamespaces": {"names": [namespaces["team-a"], namespaces["team-b"]]},
            },
        },
    )
    ref = {"connectionRef": {"kind": "ClusterGitLabConnection", "name": connection}}
    operator = OperatorProcess(control_plane.kubeconfig, ops, tmp_path, env={"GLRT_CONNECTION_NAMESPACE": ops})
    operator.args = ["run", "--verbose", *(f"--namespace={ns}" for ns in namespaces.values())]
    operator.start()
    try:
        # The connection: Ready with GitLab's version and the token's facts.
        def connection_ready() -> dict[str, Any] | None:
            body = custom.get_cluster_custom_object(GROUP, VERSION, "clustergitlabconnections", connection)
            status = body.get("status") or {}
            return status if reason_of(status) == "Reconciled" else None

        status = wait_for(connection_ready, timeout=60, message="ClusterGitLabConnection Ready")
        assert status["gitlab"]["version"] == gitlab.instance.version
        assert status["token"]["name"] == "ops" and status["token"]["scopes"] == ["api"]
        assert status["renewalTime"]

        runner = {
            "runnerType": "project_type",
            "projectId": PROJECT_ID,
            "description": "team a",
            "replicas": 1,
            "gitlab": ref,
        }
        for role in ("team-a", "team-c"):
            custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                namespaces[role],
                "runners",
                {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Runner", "metadata": {"name": "builds"}, "spec": runner},
            )
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespaces["team-b"],
            "deploytokens",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "DeployToken",
                "metadata": {"name": "pull"},
                "spec": {
                    "gitlab": ref,
                    "projectId": PROJECT_ID,
                    "scopes": ["read_registry"],
                    "secret": {"name": "pull", "type": "kubernetes.io/basic-auth"},
                },
            },
        )
        wait_for(
            lambda: status_of(custom, "runners", namespaces["team-a"], "builds").get("runnerId"),
            timeout=60,
            message="the team-a Runner's runner",
        )
        wait_for(
            lambda: reason_of(status_of(custom, "deploytokens", namespaces["team-b"], "pull")) == "Reconciled",
            timeout=60,
            message="the team-b DeployToken Ready",
        )
        refused = wait_for(
            lambda: (
                (s := status_of(custom, "runners", namespaces["team-c"], "builds"))
                and reason_of(s) == "ConnectionNotAllowed"
                and s
            ),
            timeout=60,
            message="the team-c Runner refused",
        )
        message = next(c["message"] for c in refused["conditions"] if c["type"] == "Ready")
        assert connection in message and namespaces["team-c"] in message

        # One runner (team-a's), one deploy token (team-b's); nothing for team-c.
        assert len(gitlab.runners) == 1
        assert len([c for c in gitlab.calls if c.method == "POST" and c.path.endswith("/user/runners")]) == 1
        # The team namespaces hold no GitLab access token: only what the operator wrote for them.
        for role in ("team-a", "team-b", "team-c"):
            for secret in core.list_namespaced_secret(namespaces[role]).items:
                values = [v for v in (secret.data or {}).values()]
                assert all(PAT.encode() not in base64.b64decode(v) for v in values)
    finally:
        operator.stop()
        custom.delete_cluster_custom_object(GROUP, VERSION, "clustergitlabconnections", connection)
    assert PAT not in operator.output()


def _refusal(create: Any, body: dict[str, Any]) -> str:
    with pytest.raises(client.ApiException) as caught:
        create(body)
    assert caught.value.status == 422
    return str(caught.value.body)


def test_schema_refuses_bad_connection_input_at_apply_time(kube: client.ApiClient, crd_installed: list[str]) -> None:
    """The CRDs' rules, evaluated by the real apiserver (server-side dry run: nothing is stored)."""
    custom = client.CustomObjectsApi(kube)

    def runner(gitlab: dict[str, Any]) -> Any:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Runner",
            "metadata": {"name": "r"},
            "spec": {"gitlab": gitlab, "runnerType": "instance_type"},
        }
        return custom.create_namespaced_custom_object(GROUP, VERSION, "default", "runners", body, dry_run="All")

    def cluster(spec: dict[str, Any]) -> Any:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ClusterGitLabConnection",
            "metadata": {"name": "c"},
            "spec": {"url": "https://gitlab.example.com", "credentialsSecretRef": {"name": "t"}, **spec},
        }
        return custom.create_cluster_custom_object(GROUP, VERSION, "clustergitlabconnections", body, dry_run="All")

    both = {"url": "https://gitlab.example.com", "credentialsSecretRef": {"name": "t"}, "connectionRef": {"name": "c"}}
    assert "set either connectionRef, or url and credentialsSecretRef" in _refusal(runner, both)
    assert "set either connectionRef" in _refusal(runner, {})
    assert "ClusterGitLabConnection" in _refusal(runner, {"connectionRef": {"kind": "Issuer", "name": "c"}})
    runner({"connectionRef": {"kind": "ClusterGitLabConnection", "name": "c"}})  # accepted

    assert "allowedNamespaces" in _refusal(cluster, {})
    assert "selector: {} allows every namespace" in _refusal(cluster, {"allowedNamespaces": {}})
    allowed = {"allowedNamespaces": {"selector": {}}}
    rotation = {"tokenRotation": {"renewBefore": "720h", "validFor": "700h"}}
    assert "validFor must be longer than" in _refusal(cluster, {**allowed, **rotation})
    short = {"tokenRotation": {"renewBefore": "24h"}}
    assert "renewBefore must be at least 48h" in _refusal(cluster, {**allowed, **short})
    created = cluster({**allowed, "tokenRotation": {}})  # accepted, with the defaults filled in
    assert created["spec"]["tokenRotation"] == {"enabled": True, "renewBefore": "720h", "validFor": "2160h"}
    assert "tokenRotation" not in cluster(allowed)["spec"]  # absent: the operator's defaults, the same values


def test_refuse_inline_admission_policy(
    control_plane: ControlPlane, kube: client.ApiClient, crd_installed: list[str], namespaces: dict[str, str]
) -> None:
    """connections.refuseInline: the chart's ValidatingAdmissionPolicy refuses a new inline spec.gitlab, accepts a
    connectionRef, and lets an inline Runner stored before it be updated without a spec change (its finalizer)."""
    custom = client.CustomObjectsApi(kube)
    team = namespaces["team-a"]

    def runner(name: str, gitlab: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Runner",
            "metadata": {"name": name},
            "spec": {"gitlab": gitlab, "runnerType": "instance_type"},
        }
        created: dict[str, Any] = custom.create_namespaced_custom_object(GROUP, VERSION, team, "runners", body)
        return created

    inline = {"url": "https://gitlab.example.com", "credentialsSecretRef": {"name": "t"}}
    runner("before", inline)
    chart = Path(__file__).resolve().parents[2] / "helm" / "glrt-operator"
    rendered = control_plane.helm(
        "template", "glrt", str(chart), "--namespace", namespaces["ops"], "--set", "connections.refuseInline=true"
    ).stdout
    policy = [d for d in yaml.safe_load_all(rendered) if d and d["kind"].startswith("ValidatingAdmissionPolicy")]
    assert [d["kind"] for d in policy] == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(policy))
    try:

        def refused() -> str | None:
            with contextlib.suppress(client.ApiException):  # accepted while the policy was not yet in force
                custom.delete_namespaced_custom_object(GROUP, VERSION, team, "runners", "probe")
            try:
                runner("probe", inline)
            except client.ApiException as exc:
                return str(exc.body) if exc.status in (403, 422) else None
            return None

        message = wait_for(refused, timeout=30, message="the admission policy in force")
        assert "set spec.gitlab.connectionRef" in message
        runner("by-ref", {"connectionRef": {"kind": "ClusterGitLabConnection", "name": "main"}})
        # The stored inline Runner: metadata changes (a finalizer) pass, a spec change is refused.
        patched = custom.patch_namespaced_custom_object(
            GROUP, VERSION, team, "runners", "before", {"metadata": {"finalizers": ["glrt.dev/finalizer"]}}
        )
        assert patched["metadata"]["finalizers"] == ["glrt.dev/finalizer"]
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, team, "runners", "before", {"metadata": {"finalizers": []}}
        )
        edit = {"spec": {"tags": ["x"]}}
        with pytest.raises(client.ApiException) as caught:
            custom.patch_namespaced_custom_object(GROUP, VERSION, team, "runners", "before", edit)
        assert "set spec.gitlab.connectionRef" in str(caught.value.body)
    finally:
        control_plane.kubectl("delete", "-f", "-", input=yaml.safe_dump_all(policy))


def test_connection_token_rotated_five_times_while_its_users_reconcile(
    control_plane: ControlPlane,
    kube: client.ApiClient,
    crd_installed: list[str],
    gitlab: FakeGitLab,
    namespaces: dict[str, str],
    tmp_path: Path,
) -> None:
    """The operator process renews the connection's token five times (each spec edit makes the token due: a
    renewBefore longer than what is left), while a Runner and a DeployToken using the connection resync every 3 s.
    The Secret always ends with a token GitLab accepts, GitLab's reuse detection never fires, the chain is whole."""
    core, custom = client.CoreV1Api(kube), client.CustomObjectsApi(kube)
    ops, team = namespaces["ops"], namespaces["team-a"]
    owner = next(u for u in gitlab._state.users.values() if u.username == "platform")
    first = "glpat-e2e-RotatingConnection01"
    gitlab.add_access_token(first, owner, scopes=["api"], expires_at=date.today() + timedelta(days=200), name="ops")
    core.create_namespaced_secret(
        ops, client.V1Secret(metadata=client.V1ObjectMeta(name="gitlab-admin"), string_data={"token": first})
    )
    connection = f"rot-{secrets.token_hex(3)}"
    spec = {
        "url": gitlab.url,
        "credentialsSecretRef": {"name": "gitlab-admin"},
        "allowedNamespaces": {"names": [team]},
        "tokenRotation": {"renewBefore": "720h", "validFor": "721h"},
    }
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterGitLabConnection", "metadata": {"name": connection}}
    custom.create_cluster_custom_object(GROUP, VERSION, "clustergitlabconnections", {**body, "spec": spec})
    ref = {"connectionRef": {"kind": "ClusterGitLabConnection", "name": connection}}
    operator = OperatorProcess(control_plane.kubeconfig, ops, tmp_path, env={"GLRT_CONNECTION_NAMESPACE": ops})
    operator.args = ["run", "--verbose", f"--namespace={ops}", f"--namespace={team}"]
    operator.start()

    def secret_token() -> str:
        data = core.read_namespaced_secret("gitlab-admin", ops).data
        return base64.b64decode(data["token"]).decode()

    def connection_status() -> dict[str, Any]:
        found = custom.get_cluster_custom_object(GROUP, VERSION, "clustergitlabconnections", connection)
        return dict(found.get("status") or {})

    try:
        wait_for(lambda: reason_of(connection_status()) == "Reconciled", timeout=60, message="connection Ready")
        runner = {"runnerType": "project_type", "projectId": PROJECT_ID, "replicas": 1, "gitlab": ref}
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            team,
            "runners",
            {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Runner", "metadata": {"name": "builds"}, "spec": runner},
        )
        token_spec = {
            "gitlab": ref,
            "projectId": PROJECT_ID,
            "scopes": ["read_registry"],
            "secret": {"name": "pull", "type": "kubernetes.io/basic-auth"},
        }
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            team,
            "deploytokens",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "DeployToken",
                "metadata": {"name": "pull"},
                "spec": token_spec,
            },
        )
        runner_id = wait_for(
            lambda: status_of(custom, "runners", team, "builds").get("runnerId"), timeout=60, message="runner"
        )
        seen = [first]
        # The users' GitLab calls take 0.4 s from here on, as a loaded GitLab's would; at each step the Runner is
        # edited just before the rotation is made due, so its calls (made from the token it read from the Secret) are
        # on their way while the token rotates.
        gitlab.faults.add(Fault(path=r"/(runners|deploy_tokens|graphql)", kind="latency", seconds=0.4))
        for step in range(1, 6):
            edit = {"spec": {"tags": [f"step-{step}"]}}
            custom.patch_namespaced_custom_object(GROUP, VERSION, team, "runners", "builds", edit)
            time.sleep(0.2)  # its reconcile has read the Secret and is talking to GitLab
            # Less than 200 days (4800h) left, then at most renewBefore + 25h after each rotation: a renewBefore 48h
            # longer each time makes the token due at once, exactly once.
            before = 4800 + 48 * step
            patch = {"spec": {"tokenRotation": {"renewBefore": f"{before}h", "validFor": f"{before + 1}h"}}}
            custom.patch_cluster_custom_object(GROUP, VERSION, "clustergitlabconnections", connection, patch)
            wait_for(lambda: secret_token() not in seen, timeout=60, message=f"rotation {step}")
            seen.append(secret_token())
            time.sleep(1.0)  # the Runner and the DeployToken resync (every 3 s) in between
        wait_for(
            lambda: reason_of(status_of(custom, "deploytokens", team, "pull")) == "Reconciled",
            timeout=60,
            message="DeployToken Ready with the last token",
        )
        wait_for(lambda: gitlab.runners[runner_id].tag_list == ["step-5"], timeout=60, message="the last Runner edit")
        assert status_of(custom, "runners", team, "builds")["runnerId"] == runner_id
    finally:
        operator.stop()
        custom.delete_cluster_custom_object(GROUP, VERSION, "clustergitlabconnections", connection)
    family = gitlab.token_family(first)
    assert len(family) == 6 and [t.token for t in family] == seen
    assert family[-1].active(gitlab.clock.now()) and all(t.revoked for t in family[:-1])
    counters = gitlab.token_counters
    assert counters.reuse_detections == []
    # No call of any kind ever carried a revoked token: a Runner's or DeployToken's client made from the old token
    # sends the successor (the adapter's per-token-family credential, held exclusively by the rotation).
    assert dict(counters.revoked_calls) == {}
    users = [c for c in gitlab.calls if re.search(r"/(runners|deploy_tokens|graphql)", c.path)]
    print("rotations:", len(family) - 1, "user calls:", len(users), "with a revoked token:", counters.revoked_total)
    assert len(gitlab.runners) == 1
    for token in seen:
        assert token not in operator.output()


class KilledRotation:
    """One ClusterGitLabConnection whose token (expiring in 3 days: rotated at once) is rotated under an operator
    process the test kills: its token Secret in the connection namespace, the operator, and what the tests read."""

    def __init__(
        self,
        kube: client.ApiClient,
        control_plane: ControlPlane,
        gitlab: FakeGitLab,
        ops: str,
        tmp_path: Path,
        *,
        old: str,
        token_rotation: dict[str, Any] | None,
        recovery: str | None = None,
    ):
        self.core, self.custom, self.gitlab, self.ops, self.old = (
            client.CoreV1Api(kube),
            client.CustomObjectsApi(kube),
            gitlab,
            ops,
            old,
        )
        self.owner = next(u for u in gitlab._state.users.values() if u.username == "platform")
        gitlab.add_access_token(
            old, self.owner, scopes=["api"], expires_at=date.today() + timedelta(days=3), name="ops"
        )
        tokens = {"gitlab-admin": old}
        if recovery is not None:
            gitlab.add_access_token(
                recovery, self.owner, scopes=["api"], expires_at=date.today() + timedelta(days=300), name="ops"
            )
            tokens["gitlab-recovery"] = recovery
        for name, token in tokens.items():
            self.core.create_namespaced_secret(
                ops, client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data={"token": token})
            )
        self.connection = f"kill-{secrets.token_hex(3)}"
        self.spec: dict[str, Any] = {
            "url": gitlab.url,
            "credentialsSecretRef": {"name": "gitlab-admin"},
            "allowedNamespaces": {"names": []},
        }
        if token_rotation is not None:
            self.spec["tokenRotation"] = token_rotation
        self.operator = OperatorProcess(control_plane.kubeconfig, ops, tmp_path, env={"GLRT_CONNECTION_NAMESPACE": ops})
        self.operator.args = ["run", "--verbose", f"--namespace={ops}"]
        self.created = False

    def create(self, labels: dict[str, str] | None = None) -> None:
        """Start the operator and create the connection: it rotates the token at once."""
        self.operator.start()
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterGitLabConnection"}
        body |= {"metadata": {"name": self.connection, "labels": labels or {}}, "spec": self.spec}
        self.custom.create_cluster_custom_object(GROUP, VERSION, "clustergitlabconnections", body)
        self.created = True

    def status(self) -> dict[str, Any]:
        found = self.custom.get_cluster_custom_object(GROUP, VERSION, "clustergitlabconnections", self.connection)
        return dict(found.get("status") or {})

    def secret_token(self) -> str:
        return base64.b64decode(self.core.read_namespaced_secret("gitlab-admin", self.ops).data["token"]).decode()

    def rotations(self) -> int:  # the fake records a call once answered: a held answer is counted by its successor
        return len(self.gitlab.token_family(self.old)) - 1

    def assert_chain_intact(self) -> None:
        """Reuse detection never fired and no rotate endpoint ever saw a revoked token (the fake counts both)."""
        counters = self.gitlab.token_counters
        assert counters.reuse_detections == []
        assert not [path for path in counters.revoked_calls if "rotate" in path]
        newest = self.gitlab.newest_in_family(self.old)
        assert newest.active(self.gitlab.clock.now())  # the chain was not revoked

    def assert_ready_with_a_token_gitlab_accepts(self) -> str:
        """After the restart: Ready, the fence gone, the Secret's token GitLab's newest of the family and active."""
        wait_for(lambda: reason_of(self.status()) == "Reconciled", timeout=60, message="Ready after the restart")
        stored = self.secret_token()
        found = self.gitlab.access_token(stored)
        assert found is not None and found.active(self.gitlab.clock.now())  # a token GitLab accepts
        assert found.token == self.gitlab.newest_in_family(self.old).token
        status = self.status()
        assert status.get("rotationStartedAt") is None and status["token"]["id"] == found.id
        return stored

    def close(self) -> None:
        self.operator.stop()
        if self.created:
            with contextlib.suppress(client.ApiException):
                self.custom.delete_cluster_custom_object(GROUP, VERSION, "clustergitlabconnections", self.connection)
            self.created = False


@pytest.fixture
def killed_rotation(
    control_plane: ControlPlane,
    kube: client.ApiClient,
    crd_installed: list[str],
    gitlab: FakeGitLab,
    namespaces: dict[str, str],
    tmp_path: Path,
) -> Iterator[Callable[..., KilledRotation]]:
    """`killed_rotation(old=..., token_rotation=..., recovery=...)`: the setup of every SIGKILL-mid-rotation test."""
    made: list[KilledRotation] = []

    def make(*, old: str, token_rotation: dict[str, Any] | None = None, recovery: str | None = None) -> KilledRotation:
        rig = KilledRotation(
            kube,
            control_plane,
            gitlab,
            namespaces["ops"],
            tmp_path,
            old=old,
            token_rotation=token_rotation,
            recovery=recovery,
        )
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.close()


def test_sigkill_before_gitlab_commits_the_rotation(
    killed_rotation: Callable[..., KilledRotation], gitlab: FakeGitLab
) -> None:
    """The operator recorded the fence and sent the rotate call, and is killed before GitLab acted on it (GitLab
    holds the request, and never processes it for a client that is gone): the restarted operator finds the old
    token still accepted, drops the fence, rotates again, and stores the successor; the chain is never revoked."""
    rig = killed_rotation(old="glpat-e2e-KilledBeforeRotate01")
    held = gitlab.faults.add(
        Fault(method="POST", path=r"/self/rotate$", kind="hold_before_commit", seconds=30, count=1)
    )
    started = time.monotonic()
    rig.create()
    wait_for(lambda: held.hits == 1, timeout=60, message="the rotate call held at GitLab")
    assert rig.status().get("rotationStartedAt")  # the fence, written before the call
    rig.operator.kill()
    time.sleep(0.5)  # the fake sees the connection closed within 20 ms, and gives up the request
    assert rig.rotations() == 0 and gitlab.access_token(rig.old).active(gitlab.clock.now())  # type: ignore[union-attr]
    assert rig.secret_token() == rig.old
    rig.operator.start()
    stored = rig.assert_ready_with_a_token_gitlab_accepts()
    assert stored != rig.old and rig.rotations() == 1  # rotated once, by the restarted operator
    assert gitlab.access_token(rig.old).revoked  # type: ignore[union-attr]
    rig.assert_chain_intact()
    print(f"killed before GitLab committed; Ready again after {time.monotonic() - started:.1f} s")
    rig.close()
    for token in (rig.old, stored):
        assert token not in rig.operator.output()


HOLD_FENCE = "e2e.glrt.dev/hold-fence"


@contextlib.contextmanager
def fence_held(
    control_plane: ControlPlane, custom: client.CustomObjectsApi, secret_ref: dict[str, str]
) -> Iterator[None]:
    """A ValidatingAdmissionPolicy refusing, on a ClusterGitLabConnection labelled HOLD_FENCE, any status update that
    removes the rotation fence: the operator's clearing of the fence after its Secret write fails, so a kill at the
    Secret write lands with the fence set, every time (nothing in the operator knows). In force when this yields."""
    suffix = secrets.token_hex(3)
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": f"e2e-hold-fence-{suffix}"},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": ["*"],
                        "operations": ["UPDATE"],
                        "resources": ["clustergitlabconnections/status"],
                    }
                ]
            },
            "matchConditions": [
                {
                    "name": "labelled",
                    "expression": f"has(object.metadata.labels) && '{HOLD_FENCE}' in object.metadata.labels",
                }
            ],
            "validations": [
                {
                    "expression": "!has(oldObject.status) || !has(oldObject.status.rotationStartedAt) || "
                    "(has(object.status) && has(object.status.rotationStartedAt))",
                    "message": "e2e: the rotation fence is held",
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": f"e2e-hold-fence-{suffix}"},
        "spec": {"policyName": f"e2e-hold-fence-{suffix}", "validationActions": ["Deny"]},
    }
    manifests = yaml.safe_dump_all([policy, binding])
    control_plane.kubectl("apply", "-f", "-", input=manifests)
    probe = f"probe-{suffix}"
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterGitLabConnection"}
    body |= {"metadata": {"name": probe, "labels": {HOLD_FENCE: "true"}}}
    body |= {
        "spec": {
            "url": "https://gitlab.example.com",
            "credentialsSecretRef": secret_ref,
            "allowedNamespaces": {"names": []},
        }
    }
    custom.create_cluster_custom_object(GROUP, VERSION, "clustergitlabconnections", body)
    try:
        fence = {"rotationStartedAt": "2026-01-01T00:00:00Z", "rotationFromTokenId": 1}

        def refused() -> bool:
            custom.patch_cluster_custom_object_status(
                GROUP, VERSION, "clustergitlabconnections", probe, {"status": fence}
            )
            try:
                custom.patch_cluster_custom_object_status(
                    GROUP, VERSION, "clustergitlabconnections", probe, {"status": dict.fromkeys(fence)}
                )
            except client.ApiException as exc:
                if "the rotation fence is held" in str(exc.body):
                    return True
                raise
            return False

        wait_for(refused, timeout=30, message="the fence-holding admission policy in force")
        custom.delete_cluster_custom_object(GROUP, VERSION, "clustergitlabconnections", probe)
        yield
    finally:
        with contextlib.suppress(client.ApiException):
            custom.delete_cluster_custom_object(GROUP, VERSION, "clustergitlabconnections", probe)
        control_plane.kubectl("delete", "-f", "-", input=manifests)


@pytest.mark.parametrize("window", ["fence_set", "race"])
def test_sigkill_right_after_the_secret_write(
    killed_rotation: Callable[..., KilledRotation], gitlab: FakeGitLab, control_plane: ControlPlane, window: str
) -> None:
    """GitLab answered the rotation and the operator wrote the successor into the Secret; it is killed the moment
    the Secret changes (a watch on it). `fence_set`: an admission policy keeps the operator from clearing the fence,
    so the kill always lands with the fence set; `race`: nothing held, the kill lands where it lands (printed). The
    restarted operator keeps the Secret's token (GitLab accepts it), clears a fence left behind without rotating,
    and is Ready; the chain is never revoked."""
    rig = killed_rotation(
        old={"fence_set": "glpat-e2e-KilledAfterWrite0001", "race": "glpat-e2e-KilledAfterWrite0002"}[window]
    )
    secret = rig.core.read_namespaced_secret("gitlab-admin", rig.ops)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if window == "fence_set":
            stack.enter_context(fence_held(control_plane, rig.custom, {"name": "gitlab-admin"}))
        rig.create(labels={HOLD_FENCE: "true"} if window == "fence_set" else None)
        stream = watch.Watch()
        for event in stream.stream(
            rig.core.list_namespaced_secret,
            rig.ops,
            field_selector="metadata.name=gitlab-admin",
            resource_version=secret.metadata.resource_version,
            timeout_seconds=60,
        ):
            data = event["object"].data or {}
            if event["type"] == "MODIFIED" and base64.b64decode(data.get("token", "")).decode() != rig.old:
                rig.operator.kill()
                stream.stop()
                break
        assert not rig.operator.alive(), "the Secret never received the new token"
        fence_at_kill = bool(rig.status().get("rotationStartedAt"))  # the operator is dead: this is what it left
        print(f"[{window}] killed after the Secret write; the fence was", "still set" if fence_at_kill else "cleared")
        if window == "fence_set":
            assert fence_at_kill
            labels = {HOLD_FENCE: None}
            rig.custom.patch_cluster_custom_object(
                GROUP, VERSION, "clustergitlabconnections", rig.connection, {"metadata": {"labels": labels}}
            )
    written = rig.secret_token()
    assert written != rig.old and written == gitlab.newest_in_family(rig.old).token and rig.rotations() == 1
    rig.operator.start()
    stored = rig.assert_ready_with_a_token_gitlab_accepts()
    assert stored == written and rig.rotations() == 1  # kept, never rotated again
    assert rig.status().get("lastRotationTime")
    rig.assert_chain_intact()
    print(f"[{window}] Ready again after {time.monotonic() - started:.1f} s")
    rig.close()
    for token in (rig.old, stored):
        assert token not in rig.operator.output()


def test_sigkill_while_gitlab_answers_the_rotation(
    killed_rotation: Callable[..., KilledRotation], gitlab: FakeGitLab
) -> None:
    """GitLab rotated the token and the operator is killed before the answer arrives: the restarted operator never
    rotates again with the old token (the chain stays whole, reuse detection never fires); it reports
    TokenRotationLost, and the documented repair (a new token in the Secret, the fence cleared) makes it Ready."""
    rig = killed_rotation(old="glpat-e2e-KilledMidRotation001")
    gitlab.faults.add(Fault(method="POST", path=r"/self/rotate$", kind="hold_after_commit", seconds=30, count=1))
    rig.create()
    wait_for(lambda: gitlab.access_token(rig.old).revoked, timeout=60, message="GitLab rotated")  # type: ignore[union-attr]
    assert rig.status().get("rotationStartedAt")  # the fence, written before the call
    rig.operator.kill()
    rig.operator.start()
    lost = wait_for(
        lambda: (s := rig.status()) and reason_of(s) == "TokenRotationLost" and s, timeout=60, message="reported"
    )
    time.sleep(3)  # a resync or two: still no second rotation
    assert rig.rotations() == 1
    successor = gitlab.newest_in_family(rig.old)
    assert successor.token != rig.old
    rig.assert_chain_intact()
    message = next(c["message"] for c in lost["conditions"] if c["type"] == "Ready")
    assert "Put a new token in Secret 'gitlab-admin' key 'token'" in message
    assert "spec.tokenRotation.recoverySecretRef" in message
    # The repair the message names.
    fresh = "glpat-e2e-ReplacedByTheAdmin01"
    gitlab.add_access_token(fresh, rig.owner, scopes=["api"], expires_at=date.today() + timedelta(days=200), name="ops")
    rig.core.patch_namespaced_secret("gitlab-admin", rig.ops, {"stringData": {"token": fresh}})
    rig.custom.patch_cluster_custom_object_status(
        GROUP,
        VERSION,
        "clustergitlabconnections",
        rig.connection,
        {"status": {"rotationStartedAt": None, "rotationFromTokenId": None}},
    )
    rig.custom.patch_cluster_custom_object(  # an edit, so that the operator looks again at once
        GROUP,
        VERSION,
        "clustergitlabconnections",
        rig.connection,
        {"spec": {"allowedNamespaces": {"names": [rig.ops]}}},
    )
    wait_for(lambda: reason_of(rig.status()) == "Reconciled", timeout=60, message="Ready after the repair")
    assert rig.rotations() == 1 and gitlab.token_counters.reuse_detections == []


def test_sigkill_while_gitlab_answers_the_rotation_with_a_recovery_token(
    killed_rotation: Callable[..., KilledRotation], gitlab: FakeGitLab
) -> None:
    """As above, with spec.tokenRotation.recoverySecretRef (another api token of the same user): the restarted
    operator finds the lost successor and rotates it by id with the recovery token, so the Secret ends with a token
    GitLab accepts, with no person involved; the chain is never revoked and reuse detection never fires."""
    recovery = "glpat-e2e-RecoveryToken000001"
    rig = killed_rotation(
        old="glpat-e2e-KilledMidRotation002",
        token_rotation={"recoverySecretRef": {"name": "gitlab-recovery"}},
        recovery=recovery,
    )
    gitlab.faults.add(Fault(method="POST", path=r"/self/rotate$", kind="hold_after_commit", seconds=30, count=1))
    rig.create()
    wait_for(lambda: gitlab.access_token(rig.old).revoked, timeout=60, message="GitLab rotated")  # type: ignore[union-attr]
    assert rig.status().get("rotationStartedAt")
    lost = gitlab.newest_in_family(rig.old)
    rig.operator.kill()
    rig.operator.start()
    stored = rig.assert_ready_with_a_token_gitlab_accepts()
    assert stored not in (rig.old, lost.token, recovery)
    assert [t.token for t in gitlab.token_family(rig.old)] == [rig.old, lost.token, stored]
    time.sleep(3)  # a resync or two: nothing more happens
    assert rig.secret_token() == stored and len(gitlab.token_family(rig.old)) == 3
    rig.assert_chain_intact()
    assert gitlab.access_token(recovery).active(gitlab.clock.now())  # type: ignore[union-attr]
    rig.close()
    for token in (rig.old, lost.token, stored, recovery):
        assert token not in rig.operator.output()
