"""DeployTokens as users use them: a kubelet pulls an image from a real registry with the Secret the operator keeps.

The registry is CNCF Distribution with token authentication by the fake GitLab's ``/jwt/auth``, as GitLab configures
its registry (tests/harness/registry.py); it serves HTTPS on the node's gateway and the node's containerd trusts its
CA. An image is pushed with crane to ``<registry>/platform/builds/app:1`` with a deploy token's credentials obtained
through the fake's API; its top layer holds a marker file that a pod prints, so a Succeeded pod proves its image came
from the registry. The operator runs as a process against the real apiserver (tests/e2e/test_deploy_tokens.py).

Shown: a pod with the DeployToken's ``kubernetes.io/dockerconfigjson`` Secret pulls (``imagePullPolicy: Always``)
and runs, one without it does not; 5 renewals, each followed at once by a pod that pulls with the new Secret while
the old token is still in its grace period (containerd's ``/jwt/auth`` requests for that pull, told apart by their
User-Agent in the fake's call log, all authenticate as the new token); each old token refused by ``/jwt/auth`` and
by the registry once revoked; the Secret sampled every 150 ms and never holding a refused credential (both
deploy-token expiry modes of the fake); a ``write_registry`` token pushes, a ``read_registry`` one is refused a push
by the registry.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import ssl
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from tests.e2e.test_deploy_tokens import GROUP_ID, PAT, PROJECT_ID, DeployTokens, running_operator
from tests.fake_gitlab import FakeGitLab
from tests.fake_gitlab.deploy_tokens import granted_actions
from tests.harness import registry as registry_harness
from tests.harness.controlplane import ControlPlane
from tests.harness.node import Node, build_images
from tests.harness.operator import OperatorProcess
from tests.harness.registry import Registry
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster

REPOSITORY = "platform/builds/app"  # below project platform/builds (id 7)
PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff")


def fp(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


class Creds(tuple[str, str]):
    """(username, token) whose repr shows a fingerprint, never the token (pytest prints failing calls' arguments)."""

    def __repr__(self) -> str:
        return f"Creds({self[0]!r}, sha256 {fp(self[1])})"


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab().running() as gl:
        owner = gl.add_user("platform")
        gl.add_group(GROUP_ID, "platform", owners=[owner])
        gl.add_project(PROJECT_ID, "builds", group_id=GROUP_ID, maintainers=[owner])
        gl.add_access_token(PAT, owner, scopes=["api"])
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


@dataclass(frozen=True)
class Image:
    ref: str
    marker: str  # the content of /pulled.txt in its top layer


def marker_layer(directory: Path, marker: str) -> Path:
    """A layer tarball holding /pulled.txt (world-readable: the image runs as uid 100)."""
    path = directory / f"layer-{marker}.tar"
    data = marker.encode() + b"\n"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("pulled.txt")
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def base_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runner stand-in image (busybox as /bin/sh) as an OCI layout directory, from build-images.sh's archive."""
    layout = tmp_path_factory.mktemp("runner-image")
    with tarfile.open(build_images()["localhost/glrt-runner-standin:test"]) as archive:
        archive.extractall(layout, filter="data")
    return layout


def push_image(registry: Registry, creds: tuple[str, str], layout: Path, work: Path, tag: str) -> Image:
    """``layout`` pushed as ``<REPOSITORY>:base``, plus a layer with a fresh marker as ``<REPOSITORY>:<tag>``."""
    base = registry.ref(REPOSITORY, "base")
    registry.crane("push", str(layout), base, credentials=creds)
    marker = secrets.token_hex(8)
    ref = registry.ref(REPOSITORY, tag)
    registry.crane("append", "-b", base, "-f", str(marker_layer(work, marker)), "-t", ref, credentials=creds)
    return Image(ref, marker)


def api_deploy_token(gitlab: FakeGitLab, scopes: list[str]) -> Creds:
    """A deploy token made through the fake's REST API, as a person with the project's Maintainer token would."""
    made = httpx.post(
        f"{gitlab.api_url}/projects/{PROJECT_ID}/deploy_tokens",
        headers={"PRIVATE-TOKEN": PAT},
        json={"name": "image-pusher", "scopes": scopes},
        timeout=5,
    )
    assert made.status_code == 201, made.status_code
    return Creds((made.json()["username"], made.json()["token"]))


@pytest.fixture
def image(registry: Registry, gitlab: FakeGitLab, base_layout: Path, tmp_path: Path) -> Image:
    # Pushing needs read_registry too: crane reads the manifest and blobs before writing, as docker push does.
    started = time.monotonic()
    creds = api_deploy_token(gitlab, ["read_registry", "write_registry"])
    pushed = push_image(registry, creds, base_layout, tmp_path, "1")
    print(f"\nregistry started in {registry.startup_seconds:.2f} s; image pushed in {time.monotonic() - started:.1f} s")
    return pushed


@pytest.fixture
def tokens(kube: client.ApiClient, namespace: str, gitlab: FakeGitLab, crd_installed: list[str]) -> DeployTokens:
    t = DeployTokens(kube, namespace, gitlab)
    t.put_secret("gitlab-api", {"token": PAT})
    return t


@pytest.fixture
def operator(
    control_plane: ControlPlane, namespace: str, tokens: DeployTokens, tmp_path: Path
) -> Iterator[OperatorProcess]:
    with running_operator(control_plane, namespace, tokens, tmp_path) as process:
        yield process


# --- pods ------------------------------------------------------------------------------------------------------------


def start_pod(core: client.CoreV1Api, namespace: str, name: str, image: str, pull_secret: str | None) -> None:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 0,
        "containers": [
            {
                "name": "app",
                "image": image,
                "imagePullPolicy": "Always",
                "command": ["/bin/sh", "-c", "cat /pulled.txt"],
            }
        ],
    }
    if pull_secret is not None:
        spec["imagePullSecrets"] = [{"name": pull_secret}]
    core.create_namespaced_pod(namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})


def pull_failure(core: client.CoreV1Api, namespace: str, name: str) -> str | None:
    pod = core.read_namespaced_pod(name, namespace)
    for status in pod.status.container_statuses or []:
        if status.state.waiting is not None and status.state.waiting.reason in PULL_FAILURES:
            return str(status.state.waiting.reason)
    return None


def wait_succeeded(node: Node, core: client.CoreV1Api, namespace: str, name: str, timeout: float = 90) -> str:
    """The pod's output once it Succeeded; fails at once on a pull failure."""

    def done() -> bool:
        if pull_failure(core, namespace, name):
            raise AssertionError(f"pod {name} failed to pull:\n{node.describe(namespace)[-3000:]}")
        phase = core.read_namespaced_pod(name, namespace).status.phase
        if phase == "Failed":
            raise AssertionError(f"pod {name} failed:\n{node.describe(namespace)[-3000:]}")
        return bool(phase == "Succeeded")

    wait_for(done, timeout=timeout, interval=0.3, message=f"pod {name} Succeeded")
    return str(core.read_namespaced_pod_log(name, namespace)).strip()


def pull_events(core: client.CoreV1Api, namespace: str, name: str) -> list[str]:
    items = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    return [e.message for e in items if e.reason == "Failed" and "pull" in (e.message or "").lower()]


def jwt_auth_status(gitlab: FakeGitLab, creds: tuple[str, str], actions: str = "pull") -> int:
    response = httpx.get(
        f"{gitlab.url}/jwt/auth",
        params={"service": "container_registry", "scope": f"repository:{REPOSITORY}:{actions}"},
        auth=creds,
        timeout=5,
    )
    if response.status_code == 200 and "pull" not in granted_actions(response.json()):
        return 403  # a token, but without the pull it was asked for
    return response.status_code


# --- the tests -------------------------------------------------------------------------------------------------------


def test_a_pod_pulls_with_the_deploy_tokens_secret_and_not_without_it(
    node: Node, registry: Registry, image: Image, tokens: DeployTokens, operator: OperatorProcess
) -> None:
    tokens.create(
        tokens.manifest(
            "pull",
            secret={"name": "pull", "type": "kubernetes.io/dockerconfigjson", "registry": registry.address},
            scopes=["read_registry"],
        )
    )
    tokens.wait_ready("pull")
    token_id, *creds = tokens.credentials("pull", registry.address)
    core, ns = tokens.core, tokens.namespace
    calls_before = len(tokens.gitlab.calls)

    started = time.monotonic()
    start_pod(core, ns, "with-secret", image.ref, "pull")
    assert wait_succeeded(node, core, ns, "with-secret") == image.marker
    pulled_in = time.monotonic() - started
    # containerd asked the fake for a token with the Secret's credentials (its OAuth2 POST first, refused with 404)
    calls = [c for c in tokens.gitlab.calls[calls_before:] if c.path == "/jwt/auth"]
    assert ("GET", 200) in {(c.method, c.status) for c in calls}
    assert {c.user for c in calls if c.status == 200} == {creds[0]}

    start_pod(core, ns, "without-secret", image.ref, None)
    wait_for(lambda: pull_failure(core, ns, "without-secret"), timeout=60, message="ErrImagePull without the Secret")
    messages = wait_for(lambda: pull_events(core, ns, "without-secret"), timeout=30, message="a pull failure Event")
    print(f"\npod with the Secret Succeeded in {pulled_in:.1f} s; without it: {messages[0]}")
    # The registry answers the unauthenticated request 401 with its Bearer challenge; containerd then asks the realm
    # anonymously, and GitLab refuses an anonymous token for a private project: 403 DENIED "access forbidden".
    assert any("failed to fetch anonymous token" in m and "403 Forbidden" in m for m in messages), messages
    anonymous = [c for c in tokens.gitlab.calls[calls_before:] if c.path == "/jwt/auth" and c.user is None]
    assert anonymous and {c.status for c in anonymous if c.method == "GET"} == {403}
    context = ssl.create_default_context(cafile=str(registry.ca_file))
    challenge = httpx.get(f"https://{registry.address}/v2/{REPOSITORY}/manifests/1", verify=context, timeout=5)
    assert challenge.status_code == 401
    assert challenge.headers["www-authenticate"] == (
        f'Bearer realm="{registry.realm}",service="container_registry",scope="repository:{REPOSITORY}:pull"'
    )
    assert tokens.active("pull") == [token_id]


@dataclass
class RenewalWatch:
    """Samples the Secret every 150 ms and checks its credentials at ``/jwt/auth``. The moment the Secret holds a
    new token it starts a pod pulling with it (the old token is then still in its grace period); the moment GitLab
    stops listing an old token active, it checks that ``/jwt/auth`` refuses it."""

    tokens: DeployTokens
    node: Node
    image: Image
    name: str
    registry: str
    interval: float = 0.15
    samples: int = 0
    refused: list[str] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)  # token ids in the Secret, in order
    creds: dict[int, Creds] = field(default_factory=dict)
    switched_at: dict[int, float] = field(default_factory=dict)  # new token id -> when the Secret first held it
    pod_started_at: dict[int, float] = field(default_factory=dict)  # new token id -> when its pod was created
    pod_first_call: dict[int, int] = field(default_factory=dict)  # new token id -> the fake's call count then
    dead_at: dict[int, float] = field(default_factory=dict)  # old token id -> when GitLab stopped listing it
    refused_after_revocation: dict[int, int] = field(default_factory=dict)  # old token id -> /jwt/auth status
    errors: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    max_gap: float = 0.0  # the longest time between two samples
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=10)

    def _run(self) -> None:
        self.started = self.ended = time.monotonic()
        try:
            while not self._stop.wait(max(0.0, self.started + self.samples * self.interval - time.monotonic())):
                self._sample()
        except Exception as exc:  # reported by the test; the message names no secret
            self.errors.append(f"{type(exc).__name__} at sample {self.samples}")

    def _sample(self) -> None:
        token_id, username, value = self.tokens.credentials(self.name, self.registry)
        now = time.monotonic()
        self.samples += 1
        self.max_gap = max(self.max_gap, now - self.ended)
        self.ended = now
        creds = Creds((username, value))
        if not self.seen or self.seen[-1] != token_id:
            self.seen.append(token_id)
            self.creds[token_id] = creds
            self.switched_at[token_id] = now
            if len(self.seen) > 1:  # a renewal: pull with the new Secret at once
                self.pod_first_call[token_id] = len(self.tokens.gitlab.calls)
                start_pod(self.tokens.core, self.tokens.namespace, f"pull-{len(self.seen) - 1}", self.image.ref, "pull")
                self.pod_started_at[token_id] = time.monotonic()
        if jwt_auth_status(self.tokens.gitlab, creds) != 200:
            self.refused.append(f"token {token_id} (sha256 {fp(value)}) at sample {self.samples}")
        active = self.tokens.active(self.name)
        for old in self.seen[:-1]:
            if old not in active and old not in self.dead_at:
                self.dead_at[old] = time.monotonic()
                self.refused_after_revocation[old] = jwt_auth_status(self.tokens.gitlab, self.creds[old])


@pytest.mark.parametrize("expiry_mode", ["instant", "legacy"])
def test_five_renewals_each_pulled_by_a_new_pod_and_every_revoked_token_refused(
    node: Node,
    registry: Registry,
    image: Image,
    tokens: DeployTokens,
    gitlab: FakeGitLab,
    operator: OperatorProcess,
    expiry_mode: str,
) -> None:
    # Tokens die 16 s after creation; renewal 6 s before (at most 10% earlier: jitter), the old token revoked 4 s
    # after the Secret moved on, so before it would expire. renewBefore stays under half the lifetime.
    gitlab.settings.deploy_token_expiry_mode = expiry_mode  # legacy on a host in UTC
    gitlab.settings.deploy_token_lifetime_seconds = 16
    secret = {"name": "pull", "type": "kubernetes.io/dockerconfigjson", "registry": registry.address}
    tokens.create(tokens.manifest("pull", secret=secret, validFor="1h", renewBefore="6s", gracePeriod="4s"))
    tokens.wait_ready("pull")
    core, ns = tokens.core, tokens.namespace
    start_pod(core, ns, "pull-0", image.ref, "pull")
    first_pull = wait_succeeded(node, core, ns, "pull-0")
    assert first_pull == image.marker

    watch = RenewalWatch(tokens, node, image, "pull", registry.address)
    watch.start()
    try:
        wait_for(lambda: len(watch.seen) >= 6 or watch.errors, timeout=120, interval=0.5, message="5 renewals")
        wait_for(
            lambda: all(t in watch.dead_at for t in watch.seen[:5]) or watch.errors,
            timeout=20,
            message="the 5 replaced tokens revoked",
        )
    finally:
        watch.stop()
    assert watch.errors == []
    renewed = watch.seen[1:6]
    pull_seconds = []
    for n, token_id in enumerate(renewed, start=1):
        started = watch.pod_started_at[token_id]
        assert wait_succeeded(node, core, ns, f"pull-{n}") == image.marker
        pod = core.read_namespaced_pod(f"pull-{n}", ns)
        finished = pod.status.container_statuses[0].state.terminated.finished_at
        pull_seconds.append((finished - pod.metadata.creation_timestamp).total_seconds())
        previous = watch.seen[n - 1]
        # the pod was created after the Secret update and before the token it replaced was revoked
        assert watch.switched_at[token_id] <= started < watch.dead_at[previous], n

    # Each of those pods pulled with the new token, not the old one still valid in its grace period: containerd's
    # requests to /jwt/auth from the pod's creation to the next one's all authenticated as the new deploy token.
    calls = gitlab.calls
    bounds = [watch.pod_first_call[t] for t in renewed] + [len(calls)]
    containerd_requests = []
    for n, token_id in enumerate(renewed):
        window = calls[bounds[n] : bounds[n + 1]]
        # containerd first POSTs (OAuth2), which GitLab does not route (404), then GETs with Basic credentials.
        pulls = [c for c in window if (c.method, c.path) == ("GET", "/jwt/auth") and "containerd" in c.user_agent]
        as_whom = {(c.user, c.status) for c in pulls}
        assert pulls and as_whom == {(f"gitlab+deploy-token-{token_id}", 200)}, (n + 1, as_whom)
        containerd_requests.append(len(pulls))

    # every replaced token: revoked in GitLab, refused by /jwt/auth at its revocation and by the registry now
    old = {t.id: t for t in tokens.ours("pull") if t.id in watch.seen[:5]}
    assert sorted(old) == sorted(watch.seen[:5]) and all(t.revoked for t in old.values())
    assert all(watch.refused_after_revocation[t] == 401 for t in watch.seen[:5]), watch.refused_after_revocation
    registry_refusals = []
    for token_id in watch.seen[:5]:
        result = registry.crane("digest", image.ref, credentials=watch.creds[token_id], check=False)
        registry_refusals.append(result.returncode != 0 and "UNAUTHORIZED" in result.stderr)
    assert all(registry_refusals), registry_refusals
    current = watch.creds[watch.seen[-1]]
    assert registry.crane("digest", image.ref, credentials=current).returncode == 0

    grace_kept = [watch.dead_at[t] - watch.switched_at[watch.seen[i + 1]] for i, t in enumerate(watch.seen[:5])]
    span = watch.ended - watch.started
    print(
        f"\n[{expiry_mode}] {len(watch.seen) - 1} renewals in {span:.1f} s, {watch.samples} samples (one per "
        f"{span / watch.samples * 1000:.0f} ms, at most {watch.max_gap * 1000:.0f} ms apart), "
        f"{len(watch.refused)} refused; pods after each renewal pulled as the new token (containerd's /jwt/auth "
        f"requests per pod {containerd_requests}, every one the new token's, 200) and "
        f"finished in {min(pull_seconds):.0f}-{max(pull_seconds):.0f} s (API timestamps, 1 s resolution); old "
        f"token revoked {min(grace_kept):.1f}-{max(grace_kept):.1f} s after the Secret moved on (grace 4 s); "
        f"every revoked token refused by /jwt/auth (401) and the registry (crane: UNAUTHORIZED)"
    )
    # Every 150 ms when the machine keeps up (a sample reads the Secret and asks /jwt/auth); never a gap near the
    # 4 s grace period, in which a refused credential could hide.
    assert watch.refused == [] and watch.max_gap < 1.0


def test_write_registry_pushes_and_read_registry_is_refused_a_push(
    node: Node,
    registry: Registry,
    image: Image,
    base_layout: Path,
    tokens: DeployTokens,
    tmp_path: Path,
    operator: OperatorProcess,
) -> None:
    for name, scopes in (("writer", ["read_registry", "write_registry"]), ("reader", ["read_registry"])):
        secret = {"name": name, "type": "kubernetes.io/dockerconfigjson", "registry": registry.address}
        tokens.create(tokens.manifest(name, secret=secret, scopes=scopes))
    for name in ("writer", "reader"):
        tokens.wait_ready(name)
    _, *writer = tokens.credentials("writer", registry.address)
    _, *reader = tokens.credentials("reader", registry.address)
    writer_creds, reader_creds = Creds((writer[0], writer[1])), Creds((reader[0], reader[1]))

    pushed = push_image(registry, writer_creds, base_layout, tmp_path, "2")
    refused = registry.crane(
        "append",
        "-b",
        registry.ref(REPOSITORY, "base"),
        "-f",
        str(marker_layer(tmp_path, "refused")),
        "-t",
        registry.ref(REPOSITORY, "3"),
        credentials=reader_creds,
        check=False,
    )
    print(f"\nread_registry push: {refused.stderr.strip().splitlines()[-1]}")
    assert refused.returncode != 0
    # the registry's answer: the token /jwt/auth gave the reader has no push, so the upload is refused
    assert "UNAUTHORIZED" in refused.stderr and "push" in refused.stderr
    tags = registry.crane("ls", f"{registry.address}/{REPOSITORY}", credentials=reader_creds)
    assert sorted(tags.stdout.split()) == ["1", "2", "base"]  # nothing of the refused push landed
    # what the writer pushed, the reader's Secret pulls onto the node
    start_pod(tokens.core, tokens.namespace, "reader-pulls", pushed.ref, "reader")
    assert wait_succeeded(node, tokens.core, tokens.namespace, "reader-pulls") == pushed.marker
    assert jwt_auth_status(tokens.gitlab, reader_creds, "pull,push") == 200
