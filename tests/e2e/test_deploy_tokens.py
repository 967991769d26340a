"""DeployTokens end to end: the operator as a real process against the real apiserver and the fake GitLab.

Apply -> a Secret in the requested format that the fake registry's token check accepts, one active token; renewals
with short lifetimes while the Secret is sampled every 100 ms; SIGKILL around the create and the renewal; bad input
as a condition with nothing created in GitLab and no hot loop; delete revokes. Nothing secret in the operator's
output, Events or the objects' status (checked on teardown)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from glrt_operator.core.api import GROUP, VERSION
from tests.fake_gitlab import FakeGitLab, Fault
from tests.fake_gitlab.deploy_tokens import granted_actions
from tests.harness.conditions import ready_for_generation
from tests.harness.controlplane import ControlPlane
from tests.harness.operator import OperatorProcess
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster

PLURAL = "deploytokens"
PAT = "glpat-e2e-DeployT0kensMaintainer"
DEV_PAT = "glpat-e2e-DeveloperWithoutRights"
PROJECT_ID, GROUP_ID = 7, 3
REPO = "platform/builds"
TOKEN_ID = "glrt.dev/deploy-token-id"


def fp(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab().running() as gl:
        owner = gl.add_user("platform")
        gl.add_group(GROUP_ID, "platform", owners=[owner])
        gl.add_project(PROJECT_ID, "builds", group_id=GROUP_ID, maintainers=[owner])
        gl.add_access_token(PAT, owner, scopes=["api"])
        dev = gl.add_user("developer")
        gl.add_project_member(PROJECT_ID, dev, "developer")
        gl.add_access_token(DEV_PAT, dev, scopes=["api"])
        yield gl


class DeployTokens:
    """A thin client for `DeployToken` objects, their Secrets and Events in one namespace, as the admin."""

    def __init__(self, api: client.ApiClient, namespace: str, gitlab: FakeGitLab):
        self.namespace = namespace
        self.gitlab = gitlab
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    def manifest(self, name: str, secret: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "DeployToken",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "gitlab": {"url": self.gitlab.url, "credentialsSecretRef": {"name": "gitlab-api"}},
                "projectId": PROJECT_ID,
                "scopes": ["read_registry"],
                "secret": secret or {"name": name, "registry": "registry.test:5050"},
            },
        }
        body["spec"].update(spec)
        return body

    def create(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, copy.deepcopy(body))

    def get(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        return body

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def condition(self, name: str, type_: str = "Ready") -> dict[str, Any]:
        return next((dict(c) for c in self.get(name).get("status", {}).get("conditions", []) if c["type"] == type_), {})

    def wait_ready(self, name: str, timeout: float = 60) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            body = self.get(name)
            return body if ready_for_generation(body) else None

        return wait_for(ready, timeout=timeout, message=f"DeployToken {name} Ready")

    def wait_reason(self, name: str, reason: str, timeout: float = 60) -> dict[str, Any]:
        return wait_for(
            lambda: (c := self.condition(name)).get("reason") == reason and c,
            timeout=timeout,
            message=f"{name}: Ready condition with reason {reason}",
        )

    def secret(self, name: str) -> client.V1Secret | None:
        try:
            return self.core.read_namespaced_secret(name, self.namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def credentials(self, name: str, registry: str | None = "registry.test:5050") -> tuple[int, str, str]:
        """(token id, username, token) as the Secret holds them, read as a kubelet would."""
        secret = self.secret(name)
        assert secret is not None, f"Secret {name} missing"
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        token_id = int(secret.metadata.annotations[TOKEN_ID])
        if secret.type == "kubernetes.io/basic-auth":
            return token_id, data["username"], data["password"]
        assert secret.type == "kubernetes.io/dockerconfigjson" and registry is not None
        entry = json.loads(data[".dockerconfigjson"])["auths"][registry]
        assert base64.b64decode(entry["auth"]).decode() == f"{entry['username']}:{entry['password']}"
        return token_id, entry["username"], entry["password"]

    def registry_accepts(self, username: str, token: str) -> bool:
        """The fake registry's token endpoint, asked as `docker pull` would."""
        response = httpx.get(
            f"{self.gitlab.url}/jwt/auth",
            params={"service": "container_registry", "scope": f"repository:{REPO}:pull"},
            auth=(username, token),
            timeout=5,
        )
        return response.status_code == 200 and granted_actions(response.json()) == ["pull"]

    def token_name(self, name: str) -> str:
        return "glrt-" + f"{self.namespace}-{name}-" + self.get(name)["metadata"]["uid"].replace("-", "")[:8]

    def ours(self, name: str) -> list[Any]:
        prefix = f"glrt-{self.namespace}-{name}-"
        return [t for t in self.gitlab.deploy_tokens() if t.name.startswith(prefix)]

    def active(self, name: str) -> list[int]:
        prefix = f"glrt-{self.namespace}-{name}-"
        return sorted(t.id for t in self.gitlab.active_deploy_tokens() if t.name.startswith(prefix))

    def posts(self) -> int:
        return len([c for c in self.gitlab.calls if c.method == "POST" and c.path.endswith("/deploy_tokens")])

    def events(self, reason: str | None = None) -> list[Any]:
        items = self.core.list_namespaced_event(self.namespace).items
        return [e for e in items if reason is None or e.reason == reason]

    def put_secret(self, name: str, data: dict[str, str]) -> None:
        self.core.create_namespaced_secret(
            self.namespace, client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data)
        )


@pytest.fixture
def tokens(kube: client.ApiClient, namespace: str, gitlab: FakeGitLab, crd_installed: list[str]) -> DeployTokens:
    t = DeployTokens(kube, namespace, gitlab)
    t.put_secret("gitlab-api", {"token": PAT})
    return t


def assert_no_secrets(output: str, tokens: DeployTokens) -> None:
    """No deploy token GitLab issued and no access token in the operator's output, Events or objects."""
    secrets = {t.token for t in tokens.gitlab.deploy_tokens()} | {PAT, DEV_PAT}
    listing = tokens.custom.list_namespaced_custom_object(GROUP, VERSION, tokens.namespace, PLURAL)["items"]
    places = {
        "operator output": output,
        "events": "\n".join(f"{e.reason} {e.message}" for e in tokens.events()),
        "deploy token objects": json.dumps([{"s": i.get("status"), "m": i.get("metadata")} for i in listing]),
    }
    for where, text in places.items():
        leaked = [s[:7] + "..." for s in secrets if s in text]
        assert not leaked, f"{len(leaked)} secret(s) in the {where} (prefixes only: {leaked})"


@contextmanager
def running_operator(
    control_plane: ControlPlane, namespace: str, tokens: DeployTokens, tmp_path: Path, env: dict[str, str] | None = None
) -> Iterator[OperatorProcess]:
    """The operator as a process; on the way out, nothing secret in its output, the Events or the objects."""
    process = OperatorProcess(control_plane.kubeconfig, namespace, tmp_path, env=env)
    process.start()
    try:
        yield process
    finally:
        process.stop()
        assert_no_secrets(process.output(), tokens)


@pytest.fixture
def operator(
    control_plane: ControlPlane, namespace: str, tokens: DeployTokens, tmp_path: Path
) -> Iterator[OperatorProcess]:
    with running_operator(control_plane, namespace, tokens, tmp_path) as process:
        yield process


# --- apply and delete ----------------------------------------------------------------------------------------------


def test_apply_gives_a_secret_the_registry_accepts_and_delete_revokes(
    tokens: DeployTokens, operator: OperatorProcess
) -> None:
    tokens.create(tokens.manifest("pull"))
    tokens.create(
        tokens.manifest(
            "creds",
            secret={"name": "repo-creds", "type": "kubernetes.io/basic-auth"},
            scopes=["read_repository", "read_registry"],
            username="ci-puller",
        )
    )
    for name, secret_name, secret_type in (
        ("pull", "pull", "kubernetes.io/dockerconfigjson"),
        ("creds", "repo-creds", "kubernetes.io/basic-auth"),
    ):
        status = tokens.wait_ready(name)["status"]
        token_id, username, value = tokens.credentials(secret_name)
        secret = tokens.secret(secret_name)
        assert secret is not None and secret.type == secret_type
        assert secret.metadata.owner_references[0].kind == "DeployToken"
        assert tokens.registry_accepts(username, value)
        assert tokens.active(name) == [token_id] == [status["tokenId"]]
        (issued,) = tokens.ours(name)
        assert fp(issued.token) == fp(value) and issued.name == tokens.token_name(name)
        assert status["username"] == username and status["expiresAt"].endswith("T00:00:00Z")  # midnight UTC
        assert status["renewalTime"] < status["expiresAt"]
        assert tokens.condition(name, "TokenValid")["reason"] == "Accepted"
    assert tokens.credentials("repo-creds")[1] == "ci-puller"
    assert tokens.posts() == 2
    wait_for(lambda: len(tokens.events("TokenCreated")) == 2, timeout=10, message="TokenCreated Events")

    _, username, value = tokens.credentials("pull")
    tokens.delete("pull")
    wait_for(lambda: not tokens.active("pull"), timeout=30, message="token revoked on delete")
    assert not tokens.registry_accepts(username, value) and tokens.ours("pull")[0].revoked
    wait_for(lambda: tokens.secret("pull") is None, timeout=60, message="Secret garbage-collected")
    assert tokens.active("creds") and tokens.secret("repo-creds") is not None  # the other one is untouched


# --- renewal under sampling ---------------------------------------------------------------------------------------


@dataclass
class Sampler:
    """Reads the Secret every 100 ms and asks the registry about its credentials; watches GitLab's active count and
    when each superseded token stops working."""

    tokens: DeployTokens
    name: str
    interval: float = 0.1
    samples: int = 0
    refused: list[str] = field(default_factory=list)
    max_active: int = 0
    switched_at: dict[int, float] = field(default_factory=dict)  # token id -> when the Secret stopped holding it
    dead_at: dict[int, float] = field(default_factory=dict)  # token id -> when GitLab stopped listing it active
    seen: list[int] = field(default_factory=list)  # token ids in the Secret, in order
    started: float = 0.0
    ended: float = 0.0
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
        """At a fixed rate: sample n is due at start + n * interval (a slow sample delays only itself)."""
        self.started = time.monotonic()
        while not self._stop.wait(max(0.0, self.started + self.samples * self.interval - time.monotonic())):
            token_id, username, value = self.tokens.credentials(self.name)
            now = time.monotonic()
            self.samples += 1
            self.ended = now
            if not self.tokens.registry_accepts(username, value):
                self.refused.append(f"token {token_id} (sha256 {fp(value)}) at sample {self.samples}")
            if not self.seen or self.seen[-1] != token_id:
                if self.seen:
                    self.switched_at[self.seen[-1]] = now
                self.seen.append(token_id)
            active = self.tokens.active(self.name)
            self.max_active = max(self.max_active, len(active))
            for old in self.seen[:-1]:
                if old not in active and old not in self.dead_at:
                    self.dead_at[old] = now


def test_five_renewals_while_the_secret_is_sampled_every_100ms(
    tokens: DeployTokens, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    # Tokens die 12 s after creation; renewal at two thirds (8 s), the old token revoked 2 s later: 2 s before it
    # would expire on its own (a tighter margin lets a loaded machine see an old token expire, not be revoked).
    gitlab.settings.deploy_token_lifetime_seconds = 12
    tokens.create(tokens.manifest("pull", validFor="2h", renewBefore="1h", gracePeriod="2s"))
    tokens.wait_ready("pull")
    sampler = Sampler(tokens, "pull")
    sampler.start()
    try:
        wait_for(lambda: len(sampler.seen) >= 6, timeout=120, interval=0.5, message="5 renewals")
        last = sampler.seen[-1]
        wait_for(lambda: tokens.active("pull") == [last], timeout=10, message="the last grace period to end")
        wait_for(lambda: sampler.seen[-1] == last and all(t in sampler.dead_at for t in sampler.seen[:-1]), timeout=5)
    finally:
        sampler.stop()
    grace_kept = [sampler.dead_at[t] - sampler.switched_at[t] for t in sampler.seen[:-1] if t in sampler.dead_at]
    print(
        f"\nrenewal figures: {len(sampler.seen) - 1} renewals in {sampler.ended - sampler.started:.1f} s, "
        f"{sampler.samples} samples (one per {(sampler.ended - sampler.started) / sampler.samples * 1000:.0f} ms), "
        f"{len(sampler.refused)} refused, max {sampler.max_active} active, old token valid for "
        f"{min(grace_kept):.2f}-{max(grace_kept):.2f} s after the Secret moved on (grace 2 s)"
    )
    assert sampler.samples >= 0.8 * (sampler.ended - sampler.started) / 0.1 and sampler.refused == []
    assert sampler.max_active <= 2
    old = {t.id: t for t in tokens.ours("pull") if t.id != last}
    assert len(old) >= 5 and all(t.revoked for t in old.values())  # revoked, not merely expired
    assert len(grace_kept) >= 5 and min(grace_kept) >= 1.8  # the grace period (2 s) was honoured (100 ms sampling)
    assert tokens.posts() == len(old) + 1  # one creation per renewal, no strays


# --- SIGKILL around the create and the renewal --------------------------------------------------------------------


def assert_one_token_held(tokens: DeployTokens, name: str) -> None:
    token_id, username, value = tokens.credentials(name)
    assert tokens.active(name) == [token_id] and tokens.registry_accepts(username, value)
    assert tokens.get(name)["status"]["tokenId"] == token_id


def test_sigkill_while_the_create_reply_is_in_flight(
    tokens: DeployTokens, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    held = gitlab.faults.add(
        Fault(method="POST", path=r"/deploy_tokens$", kind="hold_after_commit", seconds=5, count=1)
    )
    tokens.create(tokens.manifest("pull"))
    wait_for(lambda: held.hits == 1 and tokens.ours("pull"), timeout=30, message="the create processed")
    operator.kill()  # GitLab made the token; its value never reached the operator
    assert len(tokens.active("pull")) == 1 and tokens.secret("pull") is None
    operator.start()
    tokens.wait_ready("pull")
    assert_one_token_held(tokens, "pull")
    assert len(tokens.ours("pull")) == 2
    wait_for(lambda: tokens.posts() == 2, timeout=10, message="both POSTs logged (the held one once its hold ends)")
    wait_for(lambda: tokens.events("StrayTokenRevoked"), timeout=10, message="StrayTokenRevoked Event")


@pytest.mark.parametrize("garble", ["html", "token-null"])
def test_a_garbled_create_answer_stores_nothing_and_its_token_is_revoked(
    tokens: DeployTokens, gitlab: FakeGitLab, operator: OperatorProcess, garble: str
) -> None:
    """GitLab made the token; a proxy's page or a null token came back (issue #27): the fence stays, the stray is
    revoked by its name, one token the registry accepts is in the Secret; deletion leaves none active."""
    fault = Fault(method="POST", path=r"/deploy_tokens$", kind="garble_after_commit", garble=garble, count=1)
    gitlab.faults.add(fault)
    tokens.create(tokens.manifest("pull"))
    tokens.wait_ready("pull")
    assert fault.hits == 1 and tokens.posts() == 2 and len(tokens.ours("pull")) == 2
    assert_one_token_held(tokens, "pull")
    wait_for(lambda: tokens.events("StrayTokenRevoked"), timeout=10, message="StrayTokenRevoked Event")
    tokens.delete("pull")
    wait_for(lambda: not tokens.active("pull"), timeout=30, message="every token revoked on delete")


def test_sigkill_during_renewals(tokens: DeployTokens, gitlab: FakeGitLab, operator: OperatorProcess) -> None:
    gitlab.settings.deploy_token_lifetime_seconds = 20  # renewal ~10 s after each creation
    tokens.create(tokens.manifest("pull", validFor="2h", renewBefore="1h", gracePeriod="2s"))
    first = tokens.wait_ready("pull")["status"]["tokenId"]

    # 1. killed while the renewal's reply is held: the new token exists in GitLab only
    held = gitlab.faults.add(
        Fault(method="POST", path=r"/deploy_tokens$", kind="hold_after_commit", seconds=5, count=1)
    )
    wait_for(lambda: held.hits == 1 and len(tokens.ours("pull")) == 2, timeout=30, message="renewal processed")
    operator.kill()
    # Neither token revoked. Not `active`: the first expires 7 s after this renewal began, and a loaded run can
    # reach this line that late; its expiry is GitLab's clock, not something the operator did.
    assert tokens.credentials("pull")[0] == first
    assert [(t.id, t.revoked) for t in tokens.ours("pull")] == [(first, False), (first + 1, False)]
    operator.start()
    wait_for(lambda: tokens.credentials("pull")[0] != first, timeout=30, message="renewed after the restart")
    second = tokens.credentials("pull")[0]
    wait_for(lambda: tokens.active("pull") == [second], timeout=20, message="stray and old token revoked")
    assert_one_token_held(tokens, "pull")

    # 2. killed the moment the Secret holds the next token (racing the status write)
    wait_for(lambda: tokens.credentials("pull")[0] != second, timeout=30, interval=0.02, message="next renewal")
    operator.kill()
    third = tokens.credentials("pull")[0]
    operator.start()
    wait_for(lambda: tokens.active("pull") == [third], timeout=30, message="old token revoked after restart")
    wait_for(lambda: tokens.get("pull")["status"]["tokenId"] == third, timeout=10, message="status follows")
    assert_one_token_held(tokens, "pull")
    # Every creation left exactly one token that was ever used: nothing active but the Secret's. Renewals go on every
    # ~10 s meanwhile, so the Secret's token is read each time, and a renewal in flight (new token stored, the
    # previous one in its 2 s grace) settles first; a stray that is never revoked still fails.
    wait_for(
        lambda: all(t.revoked for t in tokens.ours("pull") if t.id != tokens.credentials("pull")[0]),
        timeout=10,
        interval=0.2,
        message="only the Secret's token active",
    )


# --- bad input -----------------------------------------------------------------------------------------------------


def attempts(operator: OperatorProcess, reason: str) -> int:
    return operator.output().count(f"{reason}: ")


def test_secret_name_taken_by_someone_else(tokens: DeployTokens, operator: OperatorProcess) -> None:
    tokens.put_secret("taken", {"keep": "me"})
    tokens.create(tokens.manifest("pull", secret={"name": "taken", "registry": "registry.test"}))
    condition = tokens.wait_reason("pull", "SecretNameTaken")
    assert "spec.secret.name" in condition["message"] and condition["status"] == "False"
    time.sleep(8)  # long enough for a hot loop to show: back-off 0.5 s doubling to 4 s allows about 6 attempts
    tried = attempts(operator, "SecretNameTaken")
    print(f"\nSecretNameTaken: {tried} attempts in about 9 s")
    assert 2 <= tried <= 8  # retried with back-off, not in a hot loop
    assert len(tokens.events("SecretNameTaken")) == 1  # one Event per distinct problem
    assert tokens.gitlab.deploy_tokens() == [] and tokens.posts() == 0
    secret = tokens.secret("taken")
    assert secret is not None and base64.b64decode(secret.data["keep"]).decode() == "me"
    tokens.core.delete_namespaced_secret("taken", tokens.namespace)  # fixing it is enough: no edit needed
    tokens.wait_ready("pull", timeout=30)
    assert len(tokens.active("pull")) == 1


def test_access_token_without_rights(tokens: DeployTokens, operator: OperatorProcess) -> None:
    tokens.put_secret("gitlab-dev", {"token": DEV_PAT})
    body = tokens.manifest("pull")
    body["spec"]["gitlab"]["credentialsSecretRef"]["name"] = "gitlab-dev"
    tokens.create(body)
    condition = tokens.wait_reason("pull", "AccessTokenForbidden")
    assert "Maintainer" in condition["message"] and "api" in condition["message"]
    time.sleep(8)
    calls = [c for c in tokens.gitlab.calls if c.path.endswith("/deploy_tokens")]
    print(f"\nAccessTokenForbidden: {len(calls)} GitLab calls in about 9 s")
    assert 2 <= len(calls) <= 8 and tokens.gitlab.deploy_tokens() == []  # bounded retries, nothing created
    assert len(tokens.events("AccessTokenForbidden")) == 1


# --- hand edits of the Secret -------------------------------------------------------------------------------------

RESYNC, GRACE = 4.0, 3.0


@pytest.fixture
def resyncing_operator(
    control_plane: ControlPlane, namespace: str, tokens: DeployTokens, tmp_path: Path
) -> Iterator[OperatorProcess]:
    with running_operator(control_plane, namespace, tokens, tmp_path, {"GLRT_RESYNC_INTERVAL": str(RESYNC)}) as process:
        yield process


def hand_edit(tokens: DeployTokens, name: str, edit: str) -> None:
    """What a user does to the Secret with kubectl: the operator's annotations stay, the credential changes."""
    if edit == "deleted":
        tokens.core.delete_namespaced_secret(name, tokens.namespace)
        return
    secret = tokens.secret(name)
    assert secret is not None
    if edit == "emptied":  # the API refuses a dockerconfigjson Secret without the key: no credential left in it
        secret.data = {".dockerconfigjson": base64.b64encode(b"{}").decode()}
    else:
        _, username, value = tokens.credentials(name)
        username, value = ("someone-else", value) if edit == "username" else (username, value[:-4] + "xxxx")
        auth = base64.b64encode(f"{username}:{value}".encode()).decode()
        entry = {"username": username, "password": value, "auth": auth}
        config = json.dumps({"auths": {"registry.test:5050": entry}}).encode()
        secret.data = {".dockerconfigjson": base64.b64encode(config).decode()}
    tokens.core.replace_namespaced_secret(name, tokens.namespace, secret)


def held_credentials(tokens: DeployTokens, name: str) -> tuple[int, str, str] | None:
    """The Secret's credential, None while it has none (deleted, or emptied and not yet repaired)."""
    try:
        return tokens.credentials(name)
    except (AssertionError, KeyError):
        return None


@pytest.mark.parametrize("edit", ["password", "username", "emptied", "deleted"])
def test_a_hand_edited_secret_is_repaired_within_one_resync(
    tokens: DeployTokens, resyncing_operator: OperatorProcess, edit: str
) -> None:
    """Each edit loses the operator's credential: within one resync a new token is in the Secret with a
    `SecretStale` Warning; the token whose value the edit lost is revoked once the grace period is over, not before,
    and GitLab never holds more than two active."""
    tokens.create(tokens.manifest("pull", gracePeriod=f"{GRACE:.0f}s"))
    tokens.wait_ready("pull")
    first, _, _ = tokens.credentials("pull")
    hand_edit(tokens, "pull", edit)
    edited, most_active, revoked_after = time.monotonic(), 0, None
    repaired_after = None
    while time.monotonic() - edited < RESYNC + GRACE + 10:
        active = tokens.active("pull")
        most_active = max(most_active, len(active))
        if repaired_after is None and (held := held_credentials(tokens, "pull")) is not None:
            token_id, username, value = held
            if token_id != first and tokens.registry_accepts(username, value):
                repaired_after = time.monotonic() - edited
        if repaired_after is not None and first not in active:
            revoked_after = time.monotonic() - edited
            break
        time.sleep(0.1)
    print(f"\n{edit}: repaired after {repaired_after} s, old token revoked {revoked_after} s in, max {most_active}")
    # Within one resync, plus a reconcile's time on a loaded machine.
    assert repaired_after is not None and repaired_after <= RESYNC + 3.0
    assert revoked_after is not None and revoked_after - repaired_after >= GRACE - 0.5
    assert most_active <= 2 and tokens.ours("pull")[0].revoked
    stale = tokens.events("SecretStale")
    assert len(stale) == 1 and stale[0].type == "Warning"
