"""Every branch of the DeployToken use cases in-process, against the fake GitLab (real HTTP) and the in-memory
Kubernetes adapter: creation, the Secret formats and the registry's check, renewal with a grace period, tokens lost
out of band, crashes and lost replies (one token per creation), bad input, deletion, and the handlers' glue.

Short lifetimes come from the fake's `deploy_token_lifetime_seconds` knob (tokens expire seconds after creation)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import inspect
import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import kopf
import pytest
from kubernetes.client.exceptions import ApiException

from glrt_operator import metrics
from glrt_operator.controller import runtime
from glrt_operator.controller.runtime import CONFIG, wakeup_in
from glrt_operator.core.api import API_VERSION
from glrt_operator.core.errors import ReconcileError
from glrt_operator.core.events import EventType
from glrt_operator.core.times import parse_time
from glrt_operator.deploytokens import handlers
from glrt_operator.deploytokens.context import DeployTokenRef
from glrt_operator.deploytokens.deletion import delete_deploy_token
from glrt_operator.deploytokens.reconcile import DeployTokenOutcome, open_context, reconcile
from glrt_operator.deploytokens.status import DeployTokenStatus
from tests.fake_gitlab import FakeGitLab
from tests.fake_gitlab.deploy_tokens import granted_actions
from tests.fake_gitlab.faults import Fault

from .conftest import NAMESPACE, Env, InMemoryKube, RecordingPool

DT_UID = "9a8b7c6d-0000-4000-8000-00000000dt01"
LOG = logging.getLogger("tests.reconcile.deploytokens")
REPO = "platform/web"  # project 7's path in the reconcile tier's fake


def fp(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


@dataclass
class DT:
    gitlab: FakeGitLab
    kube: InMemoryKube
    pool: RecordingPool
    spec: dict[str, Any]
    ref: DeployTokenRef = field(default_factory=lambda: DeployTokenRef(NAMESPACE, "pull", DT_UID))
    events: list[tuple[EventType, str, str]] = field(default_factory=list)

    def emit(self, type_: EventType, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    def reasons(self) -> list[str]:
        return [r for _, r, _ in self.events]

    def reconcile(self) -> DeployTokenOutcome:
        return reconcile(open_context(self.kube, self.pool, self.ref, self.spec, self.emit, LOG))  # type: ignore[arg-type]

    def delete(self, give_up: bool = False) -> None:
        delete_deploy_token(self.kube, self.pool, self.ref, self.spec, self.emit, LOG, give_up=give_up)  # type: ignore[arg-type]

    @property
    def status(self) -> dict[str, Any]:
        return self.kube.deploy_token_status

    def ours(self) -> list[Any]:
        return [t for t in self.gitlab.deploy_tokens() if t.name == self.ref.token_name]

    def active(self) -> list[int]:
        return sorted(t.id for t in self.gitlab.active_deploy_tokens() if t.name == self.ref.token_name)

    def posts(self) -> int:
        return len([c for c in self.gitlab.calls if c.method == "POST" and c.path.endswith("/deploy_tokens")])

    def credentials(self) -> tuple[str, str]:
        """(username, token) from the Secret, read back the way a kubelet or a client would."""
        secret = self.kube.secrets[self.spec["secret"]["name"]]
        if secret["type"] == "kubernetes.io/basic-auth":
            return secret["data"]["username"], secret["data"]["password"]
        config = json.loads(secret["data"][".dockerconfigjson"])
        entry = config["auths"][self.spec["secret"]["registry"]]
        assert base64.b64decode(entry["auth"]).decode() == f"{entry['username']}:{entry['password']}"
        return entry["username"], entry["password"]

    def write_credentials(self, username: str, token: str) -> None:
        """A hand edit: the dockerconfigjson Secret gets this credential, its annotations kept."""
        auth = base64.b64encode(f"{username}:{token}".encode()).decode()
        entry = {"username": username, "password": token, "auth": auth}
        config = {"auths": {self.spec["secret"]["registry"]: entry}}
        self.kube.secrets[self.spec["secret"]["name"]]["data"] = {".dockerconfigjson": json.dumps(config)}

    def registry_accepts(self, creds: tuple[str, str] | None = None) -> bool:
        """The fake registry's token endpoint, asked as docker login would."""
        username, token = creds or self.credentials()
        response = httpx.get(
            f"{self.gitlab.url}/jwt/auth",
            params={"service": "container_registry", "scope": f"repository:{REPO}:pull"},
            auth=(username, token),
        )
        return response.status_code == 200 and granted_actions(response.json()) == ["pull"]

    def secret_token_id(self) -> int:
        return int(self.kube.secrets[self.spec["secret"]["name"]]["annotations"]["glrt.dev/deploy-token-id"])


@pytest.fixture
def dt(env: Env) -> Iterator[DT]:
    gl = env.gitlab
    if not hasattr(gl, "_dt_seeded"):
        dev = gl.add_user("developer")
        gl.add_project_member(7, dev, "developer")
        gl.add_access_token("glpat-dev", dev, scopes=["api"])
        maint = gl.add_user("group-maintainer")
        gl.add_group(71, "maintained", maintainers=[maint])
        gl.add_access_token("glpat-group-maintainer", maint, scopes=["api"])
        gl._dt_seeded = True  # type: ignore[attr-defined]
    spec = {
        "gitlab": {"url": gl.url, "credentialsSecretRef": {"name": "gitlab-api", "key": "token"}},
        "projectId": 7,
        "scopes": ["read_registry"],
        "validFor": "720h",
        "renewBefore": "168h",
        "gracePeriod": "10m",
        "secret": {"name": "registry-pull", "type": "kubernetes.io/dockerconfigjson", "registry": "registry.test"},
    }
    yield DT(gitlab=gl, kube=env.kube, pool=env.pool, spec=spec)
    gl.settings.deploy_token_lifetime_seconds = None


def short_lived(dt: DT, lifetime: int = 2, grace: str = "1s") -> None:
    """Tokens expire `lifetime` seconds after creation: renewal (at two thirds of a lifetime shorter than
    renewBefore) comes within it."""
    dt.gitlab.settings.deploy_token_lifetime_seconds = lifetime
    dt.spec.update(validFor="2h", renewBefore="1h", gracePeriod=grace)


def wait_until(outcome_time: Any) -> None:
    from datetime import UTC, datetime

    delay = (outcome_time - datetime.now(UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay + 0.05)


# --- creation ---------------------------------------------------------------------------------------------------


def test_creates_one_token_into_a_dockerconfigjson_secret_the_registry_accepts(dt: DT) -> None:
    outcome = dt.reconcile()
    (token,) = dt.ours()
    assert outcome.token_id == token.id and token.scopes == ["read_registry"]
    assert token.expires_at is not None and token.expires_at.hour == 0 and token.expires_at.minute == 0
    username, value = dt.credentials()
    assert username == token.username == f"gitlab+deploy-token-{token.id}" and fp(value) == fp(token.token)
    assert dt.registry_accepts()
    secret = dt.kube.secrets["registry-pull"]
    assert secret["type"] == "kubernetes.io/dockerconfigjson" and secret["owners"] == [DT_UID]
    assert dt.secret_token_id() == token.id
    assert dt.kube.status_writes[0].keys() == {"creationStartedAt"}  # the fence went up before the POST
    assert dt.status["tokenId"] == token.id and "creationStartedAt" not in dt.status
    assert dt.status["expiresAt"] == token.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert outcome.renewal_time is not None and outcome.renewal_time < token.expires_at
    assert dt.reasons() == ["TokenCreated"]

    calls = len(dt.gitlab.calls)
    again = dt.reconcile()  # steady state: one read, no write
    assert again.token_id == token.id and dt.posts() == 1
    assert [c.method for c in dt.gitlab.calls[calls:]] == ["GET"]
    assert dt.reasons() == ["TokenCreated"] and dt.active() == [token.id]


def test_basic_auth_secret_and_a_custom_username(dt: DT) -> None:
    dt.spec["secret"] = {"name": "repo-creds", "type": "kubernetes.io/basic-auth"}
    dt.spec.update(scopes=["read_repository", "read_registry"], username="ci-puller")
    dt.reconcile()
    secret = dt.kube.secrets["repo-creds"]
    assert secret["type"] == "kubernetes.io/basic-auth" and set(secret["data"]) == {"username", "password"}
    assert dt.credentials()[0] == "ci-puller" and dt.registry_accepts()
    (token,) = dt.ours()
    assert token.scopes == ["read_repository", "read_registry"]


def test_group_token_with_an_owner(dt: DT) -> None:
    del dt.spec["projectId"]
    dt.spec["groupId"] = 70
    dt.reconcile()
    (token,) = dt.ours()
    assert token.group_id == 70 and dt.registry_accepts()  # a group token covers the group's projects


# --- renewal ------------------------------------------------------------------------------------------------------


def test_renewal_creates_the_next_token_then_revokes_the_previous_after_grace(dt: DT) -> None:
    # The second token is due 8 s after it was made, 7 s after the grace period ends: a slow reconcile at that end
    # still finds it current (with 6 s it was 2 s, which a loaded CI machine once missed).
    short_lived(dt, lifetime=12, grace="1s")
    first = dt.reconcile()
    assert first.renewal_time is not None and first.next_check == first.renewal_time
    assert dt.reconcile().token_id == first.token_id  # not due yet
    wait_until(first.renewal_time)
    old_creds = dt.credentials()
    second = dt.reconcile()
    assert second.token_id != first.token_id and dt.secret_token_id() == second.token_id
    assert dt.active() == [first.token_id, second.token_id]  # the old one lives through its grace period
    assert dt.registry_accepts() and dt.registry_accepts(old_creds)
    assert dt.status["retiring"][0]["tokenId"] == first.token_id
    assert dt.reasons()[-1] == "TokenRenewed"
    assert second.next_check is not None and second.next_check <= second.renewal_time  # type: ignore[operator]
    wait_until(DeployTokenStatus.from_dict(dt.status).next_check())
    dt.reconcile()
    assert dt.active() == [second.token_id] and not dt.registry_accepts(old_creds) and dt.registry_accepts()
    assert dt.status["retiring"] == [] and dt.reasons()[-1] == "TokenRevoked"


def test_never_more_than_two_active_when_renewals_overlap_the_grace_period(dt: DT) -> None:
    short_lived(dt, lifetime=2, grace="30s")  # grace longer than a renewal period
    outcome = dt.reconcile()
    for _ in range(3):
        wait_until(outcome.next_check)
        outcome = dt.reconcile()
        assert len(dt.active()) <= 2 and dt.registry_accepts()
    assert dt.posts() == 4 and len(dt.active()) == 2


def test_scope_change_replaces_the_token_with_grace(dt: DT) -> None:
    first = dt.reconcile()
    dt.spec["scopes"] = ["read_registry", "read_repository"]
    second = dt.reconcile()
    assert second.token_id != first.token_id and dt.active() == [first.token_id, second.token_id]
    assert sorted(dt.ours()[-1].scopes) == ["read_registry", "read_repository"]


def test_registry_change_rewrites_the_secret_with_the_same_token(dt: DT) -> None:
    first = dt.reconcile()
    dt.spec["secret"]["registry"] = "registry.elsewhere:5050"
    assert dt.reconcile().token_id == first.token_id and dt.posts() == 1
    assert dt.credentials()[0] == first.username and dt.reasons()[-1] == "SecretUpdated"


# --- lost out of band ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["revoked", "expired", "secret_deleted", "secret_edited"])
def test_lost_token_is_reissued_with_a_warning(dt: DT, how: str) -> None:
    if how == "expired":
        short_lived(dt, lifetime=1)
    first = dt.reconcile()
    if how == "revoked":
        dt.gitlab.revoke_deploy_token(first.token_id)
    elif how == "expired":
        time.sleep(1.1)  # no reconcile at its renewal time (operator down): it expired
        dt.gitlab.settings.deploy_token_lifetime_seconds = None
    elif how == "secret_deleted":
        del dt.kube.secrets["registry-pull"]
    else:
        dt.kube.secrets["registry-pull"]["data"] = {".dockerconfigjson": "{}"}
    second = dt.reconcile()
    assert second.token_id != first.token_id and dt.registry_accepts()
    if how.startswith("secret"):
        # The lost Secret's token still works for whoever read the Secret before: revoked after the grace period.
        assert dt.active() == sorted([first.token_id, second.token_id])
        assert [r["tokenId"] for r in dt.status["retiring"]] == [first.token_id]
    else:
        assert dt.active() == [second.token_id]
    expected = {
        "revoked": "TokenRevoked",
        "expired": "TokenExpired",
        "secret_deleted": "SecretStale",
        "secret_edited": "SecretStale",
    }
    warnings = [r for t, r, _ in dt.events if t == "Warning"]
    assert warnings == [expected[how]] and second.reissued is not None


@pytest.mark.parametrize("edit", ["password", "username", "emptied"])
def test_a_hand_edit_of_the_secret_is_repaired_and_the_lost_token_retires(dt: DT, edit: str) -> None:
    """The Secret's annotations still name the current token, but its credential is not the one the operator wrote:
    the checksum in the status tells, a new token is issued, the old one retires after the grace period."""
    dt.spec["gracePeriod"] = "1s"
    first = dt.reconcile()
    username, token = dt.credentials()
    secret = dt.kube.secrets["registry-pull"]
    if edit == "emptied":
        secret["data"] = {}
    else:
        dt.write_credentials(*((username, token[:-4] + "xxxx") if edit == "password" else ("someone-else", token)))
    assert secret["annotations"]["glrt.dev/deploy-token-id"] == str(first.token_id)  # annotations kept
    second = dt.reconcile()
    assert second.token_id != first.token_id and dt.secret_token_id() == second.token_id and dt.registry_accepts()
    assert [r for t, r, _ in dt.events if t == "Warning"] == ["SecretStale"]
    assert dt.active() == sorted([first.token_id, second.token_id])  # never more than two
    wait_until(DeployTokenStatus.from_dict(dt.status).next_check())
    dt.reconcile()
    assert dt.active() == [second.token_id] and "checksum" not in json.dumps(dt.events)


def test_copies_follow_the_secret_into_namespaces_that_accept_it(dt: DT) -> None:
    dt.spec["secret"]["copyTo"] = ["ci-jobs"]
    with pytest.raises(ReconcileError) as caught:
        dt.reconcile()
    assert caught.value.reason == "NamespaceMissing" and dt.posts() == 0
    dt.kube.namespaces["ci-jobs"] = {}
    with pytest.raises(ReconcileError) as caught:
        dt.reconcile()
    assert caught.value.reason == "NamespaceNotAccepting" and dt.posts() == 0
    dt.kube.namespaces["ci-jobs"] = {"glrt.dev/accept-from": NAMESPACE}
    first = dt.reconcile()
    copy = dt.kube.secrets["ci-jobs/registry-pull"]
    assert copy["data"] == dt.kube.secrets["registry-pull"]["data"] and copy["owners"] == []
    assert copy["annotations"]["glrt.dev/deploytoken-uid"] == DT_UID and dt.status["copies"] == ["ci-jobs"]
    copy["data"] = {".dockerconfigjson": "{}"}  # drifted: repaired from the Secret
    dt.reconcile()
    assert dt.kube.secrets["ci-jobs/registry-pull"]["data"] == dt.kube.secrets["registry-pull"]["data"]
    dt.gitlab.revoke_deploy_token(first.token_id)  # reissued: the copy follows
    second = dt.reconcile()
    assert dt.kube.secrets["ci-jobs/registry-pull"]["annotations"]["glrt.dev/deploy-token-id"] == str(second.token_id)
    dt.spec["secret"]["copyTo"] = []
    dt.reconcile()
    assert "ci-jobs/registry-pull" not in dt.kube.secrets and dt.status["copies"] == []
    dt.spec["secret"]["copyTo"] = ["ci-jobs"]
    dt.reconcile()
    dt.delete()
    assert "ci-jobs/registry-pull" not in dt.kube.secrets and "SecretCopyRemoved" in dt.reasons()


def test_a_copy_never_overwrites_a_secret_it_does_not_own(dt: DT) -> None:
    dt.kube.namespaces["ci-jobs"] = {"glrt.dev/accept-from": "*"}
    dt.kube.secrets["ci-jobs/registry-pull"] = {"annotations": {}, "data": {"x": "y"}, "owners": []}
    dt.spec["secret"]["copyTo"] = ["ci-jobs"]
    with pytest.raises(ReconcileError) as caught:
        dt.reconcile()
    assert caught.value.reason == "SecretNameTaken" and "'ci-jobs'" in caught.value.message and dt.posts() == 0


# --- crashes and lost replies: one token per creation ------------------------------------------------------------


def test_lost_create_reply_leaves_one_active_token(dt: DT) -> None:
    dt.gitlab.faults.add(Fault(method="POST", path=r"/deploy_tokens$", kind="drop_after_commit", count=1))
    with pytest.raises(ReconcileError) as caught:
        dt.reconcile()
    assert caught.value.reason == "GitLabUnreachable" and "creationStartedAt" in dt.status
    assert len(dt.active()) == 1  # created, but its value never arrived
    outcome = dt.reconcile()
    assert dt.active() == [outcome.token_id] and dt.posts() == 2 and dt.registry_accepts()
    assert "StrayTokenRevoked" in dt.reasons() and "creationStartedAt" not in dt.status


def test_crash_before_the_secret_was_written(dt: DT) -> None:
    short_lived(dt, lifetime=2, grace="1s")
    first = dt.reconcile()
    wait_until(first.renewal_time)
    dt.kube.fail["apply_secret"] = ApiException(status=500, reason="etcd leader changed")
    with pytest.raises(ReconcileError):
        dt.reconcile()  # the renewal's token exists in GitLab only
    assert len(dt.active()) == 2 and dt.secret_token_id() == first.token_id
    del dt.kube.fail["apply_secret"]
    second = dt.reconcile()
    assert dt.secret_token_id() == second.token_id and dt.registry_accepts()
    assert dt.active() == [first.token_id, second.token_id]  # the stray went; the old one is in its grace
    assert dt.posts() == 3


def test_crash_after_the_secret_and_before_the_status(dt: DT) -> None:
    short_lived(dt, lifetime=4, grace="1s")
    first = dt.reconcile()
    before = dict(dt.status)
    wait_until(first.renewal_time)
    second = dt.reconcile()
    dt.status.clear()
    dt.status.update(before)  # the status write after the Secret was lost
    outcome = dt.reconcile()
    assert outcome.token_id == second.token_id and dt.posts() == 2  # adopted, nothing created
    assert dt.status["tokenId"] == second.token_id and dt.status["retiring"][0]["tokenId"] == first.token_id
    assert dt.active() == [first.token_id, second.token_id]


def test_status_lost_entirely_adopts_the_secrets_token(dt: DT) -> None:
    first = dt.reconcile()
    dt.status.clear()
    assert dt.reconcile().token_id == first.token_id and dt.posts() == 1 and dt.active() == [first.token_id]


# --- bad input: a condition, nothing created ---------------------------------------------------------------------


def test_secret_name_taken_by_someone_else(dt: DT) -> None:
    dt.kube.put_secret("registry-pull", {"x": "y"})
    calls = len(dt.gitlab.calls)
    with pytest.raises(ReconcileError) as caught:
        dt.reconcile()
    assert caught.value.reason == "SecretNameTaken" and "spec.secret.name" in caught.value.message
    assert len(dt.gitlab.calls) == calls and dt.kube.secrets["registry-pull"]["data"] == {"x": "y"}
    dt.kube.put_secret("registry-pull", {"x": "y"}, owners=["another-deploy-token"])
    with pytest.raises(ReconcileError):
        dt.reconcile()
    assert len(dt.gitlab.calls) == calls


@pytest.mark.parametrize(
    ("token", "scope", "status"),
    [("glpat-dev", {"projectId": 7}, 403), ("glpat-group-maintainer", {"groupId": 71}, 403), ("nope", {}, 401)],
)
def test_access_token_without_rights(dt: DT, token: str, scope: dict[str, int], status: int) -> None:
    if "groupId" in scope:
        del dt.spec["projectId"]
    dt.spec.update(scope)
    dt.kube.put_secret("gitlab-api", {"token": token})
    with pytest.raises(ReconcileError) as caught:
        dt.reconcile()
    assert caught.value.reason == {403: "AccessTokenForbidden", 401: "AccessTokenInvalid"}[status]
    assert not caught.value.permanent
    assert "Owner" in caught.value.message if "groupId" in scope else True
    assert dt.gitlab.deploy_tokens() == [] and "creationStartedAt" not in dt.status


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scopes": ["api"]}, "spec.scopes"),
        ({"groupId": 70}, "exactly one of projectId and groupId"),
        ({"validFor": "24h", "renewBefore": "48h"}, "validFor must be longer than spec.renewBefore"),
    ],
)
def test_invalid_spec_is_permanent_and_touches_nothing(dt: DT, change: dict[str, Any], message: str) -> None:
    dt.spec.update(change)
    with pytest.raises(ReconcileError) as caught:
        dt.reconcile()
    assert caught.value.permanent and caught.value.reason == "InvalidSpec" and message in caught.value.message
    assert dt.gitlab.calls == []


# --- deletion ----------------------------------------------------------------------------------------------------


def test_delete_revokes_current_retiring_and_strays(dt: DT) -> None:
    first = dt.reconcile()
    dt.spec["scopes"] = ["read_registry", "read_repository"]
    dt.reconcile()  # first retires
    stray = dt.gitlab.create_deploy_token(name=dt.ref.token_name, scopes=["read_registry"], project_id=7)
    other = dt.gitlab.create_deploy_token(name="someone-elses", scopes=["read_registry"], project_id=7)
    dt.delete()
    assert dt.active() == [] and {t.id for t in dt.gitlab.active_deploy_tokens()} == {other.id}
    assert dt.reasons().count("TokenRevoked") >= 3 and first.token_id != stray.id


def test_delete_counts_gone_tokens_as_done_and_skips_what_never_reached_gitlab(dt: DT) -> None:
    dt.delete()
    assert dt.gitlab.calls == []
    dt.reconcile()
    dt.gitlab.revoke_deploy_token(dt.status["tokenId"])
    events = len(dt.events)
    dt.delete()
    assert len(dt.events) == events  # nothing left to revoke


def test_delete_without_an_access_token_gives_up_only_when_told(dt: DT) -> None:
    dt.reconcile()
    del dt.kube.secrets["gitlab-api"]
    with pytest.raises(ReconcileError):
        dt.delete()
    dt.delete(give_up=True)
    assert dt.reasons()[-1] == "RevokeSkipped"


# --- the handlers' glue ------------------------------------------------------------------------------------------


@pytest.fixture
def posted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    monkeypatch.setattr(kopf, "event", lambda body, *, type, reason, message: events.append((type, reason)))
    return events


def body_of(dt: DT, generation: int = 1) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": API_VERSION,
            "kind": "DeployToken",
            "metadata": {"name": "pull", "namespace": NAMESPACE, "uid": DT_UID, "generation": generation},
            "spec": dt.spec,
            "status": dict(dt.status),
        }
    )


def memo_of(dt: DT) -> kopf.Memo:
    return dt.__dict__.setdefault(
        "memo", kopf.Memo(kube=dt.kube, gitlab=dt.pool, resync_pool=ThreadPoolExecutor(1, thread_name_prefix="test"))
    )


def handle(handler: Any, dt: DT, body: kopf.Body, retry: int = 0) -> kopf.Patch:
    """Call an event handler as Kopf does; Kopf applies its patch after success or failure."""
    patch = kopf.Patch()
    try:
        result = handler(
            body=body, spec=body["spec"], status=body["status"], patch=patch, memo=memo_of(dt), logger=LOG, retry=retry
        )
        if inspect.iscoroutine(result):  # resumes are resyncs: async, on the resync pool
            asyncio.run(result)
    finally:
        dt.status.update(patch.get("status", {}))
    return patch


def test_handler_writes_status_and_conditions(dt: DT, posted: list[tuple[str, str]]) -> None:
    body = body_of(dt, generation=2)
    handle(handlers.on_deploy_token_changed, dt, body_of(dt, body["metadata"]["generation"]), retry=0)
    status = dt.status
    assert status["observedGeneration"] == 2 and status["tokenId"] == dt.ours()[0].id
    assert status["username"] == dt.ours()[0].username and status["renewalTime"] < status["expiresAt"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True" and conditions["TokenValid"]["reason"] == "Accepted"
    assert posted == [("Normal", "TokenCreated")]


def test_handler_failure_is_a_condition_with_one_event_and_backoff(dt: DT, posted: list[tuple[str, str]]) -> None:
    dt.kube.put_secret("registry-pull", {"x": "y"})
    for retry in (0, 1):
        body = body_of(dt)
        with pytest.raises(kopf.TemporaryError) as caught:
            handle(handlers.on_deploy_token_changed, dt, body_of(dt, body["metadata"]["generation"]), retry=retry)
        assert caught.value.delay == CONFIG.backoff(retry)
    ready = dt.status["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "SecretNameTaken")
    assert posted == [("Warning", "SecretNameTaken")]
    dt.spec["scopes"] = ["nonsense"]
    body = body_of(dt)
    with pytest.raises(kopf.PermanentError):
        handle(handlers.on_deploy_token_changed, dt, body_of(dt, body["metadata"]["generation"]), retry=0)


class Stopped:
    """Kopf's DaemonStopped as the daemon uses it: `wait` returns True once it is time to stop."""

    def __init__(self, wakeups: int):
        self.wakeups = wakeups
        self.waits: list[float] = []

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 (Kopf's signature)
        self.waits.append(timeout)
        self.wakeups -= 1
        return self.wakeups < 0


def run_daemon(dt: DT, wakeups: int, status: dict[str, Any]) -> Stopped:
    body = body_of(dt)
    body["status"].update(status)
    stopped = Stopped(wakeups)
    daemon = handlers.renew_deploy_token(
        body=body, spec=body["spec"], status=body["status"], memo=memo_of(dt), logger=LOG, stopped=stopped
    )
    asyncio.run(daemon)
    return stopped


def test_daemon_leaves_an_unreconciled_generation_to_the_event_handlers(dt: DT, posted: list[tuple[str, str]]) -> None:
    stopped = run_daemon(dt, wakeups=2, status={})
    assert stopped.waits == [CONFIG.resync_interval] * 3 and dt.gitlab.calls == []
    # A failure of this generation is written with its observedGeneration: still the event handlers' (their back-off)
    failed = {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "False", "observedGeneration": 1}]}
    stopped = run_daemon(dt, wakeups=2, status=failed)
    assert stopped.waits == [CONFIG.resync_interval] * 3 and dt.gitlab.calls == []
    # Written before reconciledGeneration existed: Ready=True of this generation says it was reconciled
    legacy = {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True", "observedGeneration": 1}]}
    run_daemon(dt, wakeups=1, status=legacy)
    assert dt.gitlab.calls != []


def test_daemon_wakes_at_the_renewal_time_and_backs_off_on_failure(dt: DT, posted: list[tuple[str, str]]) -> None:
    stopped = run_daemon(dt, wakeups=1, status={"reconciledGeneration": 1})
    assert stopped.waits[0] == CONFIG.resync_interval  # nothing known yet
    assert 0 < stopped.waits[1] <= CONFIG.resync_interval and dt.status["tokenId"]
    short_lived(dt, lifetime=4)
    dt.gitlab.revoke_deploy_token(dt.status["tokenId"])  # reissued with the short lifetime
    stopped = run_daemon(dt, wakeups=1, status={"reconciledGeneration": 1})
    assert stopped.waits[1] < 3.0  # woken for the renewal, at about two thirds of the 4 s lifetime
    del dt.kube.secrets["gitlab-api"]
    stopped = run_daemon(dt, wakeups=2, status={**dt.status, "reconciledGeneration": 1})
    assert stopped.waits[1:] == [CONFIG.backoff(0), CONFIG.backoff(1)]
    assert posted[-1] == ("Warning", "CredentialsMissing")


def test_wakeup_delay() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 11, 23, tzinfo=UTC)
    assert wakeup_in(None, now, 300) == 300
    assert wakeup_in(now + timedelta(seconds=5), now, 300) == 5
    assert wakeup_in(now - timedelta(seconds=5), now, 300) == 0.2
    assert wakeup_in(now + timedelta(hours=5), now, 300) == 300
    status = {"renewalTime": "2026-11-23T01:00:00Z", "retiring": [{"tokenId": 1, "revokeAt": "2026-11-23T00:10:00Z"}]}
    assert DeployTokenStatus.from_dict(status).next_check() == now + timedelta(minutes=10)
    assert DeployTokenStatus.from_dict({}).next_check() is None


def test_handler_delete(dt: DT, posted: list[tuple[str, str]]) -> None:
    dt.reconcile()
    body = body_of(dt)
    handle(handlers.on_deploy_token_deleted, dt, body_of(dt, body["metadata"]["generation"]), retry=0)
    assert dt.active() == [] and posted == [("Normal", "TokenRevoked")]


def test_handlers_keep_the_deploy_token_metrics(dt: DT, posted: list[tuple[str, str]]) -> None:
    """Dates and Ready after a reconcile, a rotation counted by its reason, a failure as Ready=False, and every
    series of the object gone once it is deleted."""
    labels = {"namespace": NAMESPACE, "name": "pull"}

    def sample(metric: str, **more: str) -> float | None:
        return metrics.REGISTRY.get_sample_value(metric, {**labels, **more})

    renewals_before = sample("glrt_deploytoken_token_rotations_total", reason="requested") or 0.0
    body = body_of(dt, generation=1)
    handle(handlers.on_deploy_token_changed, dt, body_of(dt, body["metadata"]["generation"]), retry=0)
    expires = parse_time(dt.status["expiresAt"])
    assert expires is not None
    assert sample("glrt_deploytoken_token_expiration_timestamp_seconds") == expires.timestamp()
    assert sample("glrt_deploytoken_ready_status", condition="True") == 1.0

    dt.spec["scopes"] = ["read_registry", "read_repository"]  # GitLab cannot edit a token: a new one is issued
    handle(handlers.on_deploy_token_changed, dt, body_of(dt, body["metadata"]["generation"]), retry=0)
    assert sample("glrt_deploytoken_token_rotations_total", reason="requested") == renewals_before + 1

    dt.gitlab.faults.add(Fault(method="GET", path=r"/deploy_tokens$", status=500, count=10))
    with pytest.raises(kopf.TemporaryError):
        handle(handlers.on_deploy_token_changed, dt, body_of(dt, body["metadata"]["generation"]), retry=0)
    assert sample("glrt_deploytoken_ready_status", condition="False") == 1.0
    dt.gitlab.faults.clear()

    handle(handlers.on_deploy_token_deleted, dt, body_of(dt, body["metadata"]["generation"]), retry=0)
    assert sample("glrt_deploytoken_ready_status", condition="True") is None
    assert sample("glrt_deploytoken_token_expiration_timestamp_seconds") is None


def ready_of(dt: DT) -> dict[str, Any]:
    condition: dict[str, Any] = next(c for c in dt.status["conditions"] if c["type"] == "Ready")
    return condition


def test_a_resync_rides_out_a_transient_gitlab_failure_like_a_runner_resync(
    dt: DT, posted: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dropped connection in the renewal daemon's resync leaves Ready as it is and is retried after the back-off;
    one outlasting a resync interval is reported (the same policy as a Runner's resync timer)."""
    handle(handlers.on_deploy_token_changed, dt, body_of(dt))
    assert ready_of(dt)["status"] == "True" and posted == [("Normal", "TokenCreated")]
    dt.gitlab.faults.add(Fault(method="GET", path=r"/deploy_tokens$", kind="drop", count=1))
    stopped = run_daemon(dt, wakeups=2, status=dict(dt.status))
    assert stopped.waits[1] == CONFIG.backoff(0)  # retried soon, not at the next interval
    assert ready_of(dt)["status"] == "True" and posted == [("Normal", "TokenCreated")]
    assert stopped.waits[2] > CONFIG.backoff(0)  # the retry succeeded: back to the renewal schedule
    # The same failure for longer than one resync interval (made zero here): reported, once.
    monkeypatch.setattr(runtime, "CONFIG", dataclasses.replace(CONFIG, resync_interval=0.0))
    dt.gitlab.faults.add(Fault(method="GET", path=r"/deploy_tokens$", status=503))
    run_daemon(dt, wakeups=3, status=dict(dt.status))
    assert ready_of(dt)["status"] == "False" and ready_of(dt)["reason"] == "GitLabUnavailable"
    assert posted[1:] == [("Warning", "GitLabUnavailable")]


def test_an_operator_restart_with_200_deploy_tokens_writes_nothing_and_reads_one_resync(
    env: Env, dt: DT, posted: list[tuple[str, str]]
) -> None:
    """Kopf resumes every DeployToken at start: each resume is a resync (one read of its project's deploy tokens, at
    resync priority), not an event reconcile, so nothing is written to GitLab or the cluster."""
    owner = env.gitlab.add_user("fleet-owner")
    env.gitlab.add_access_token("glpat-fleet", owner, scopes=["api"])
    fleet: list[DT] = []
    for i in range(200):
        env.gitlab.add_project(2000 + i, f"fleet-{i}", maintainers=[owner])
        kube = InMemoryKube()
        kube.put_secret("gitlab-api", {"token": "glpat-fleet"})
        spec = {**dt.spec, "projectId": 2000 + i}
        ref = DeployTokenRef(NAMESPACE, "pull", f"0b7c1f7e-2222-4000-8000-{i:012d}")
        member = DT(gitlab=env.gitlab, kube=kube, pool=dt.pool, spec=spec, ref=ref)
        handle(handlers.on_deploy_token_changed, member, body_of(member))
        fleet.append(member)
    versions = [dict(m.kube.resource_versions) for m in fleet]
    calls = len(env.gitlab.calls)
    for member in fleet:
        handle(handlers.on_deploy_token_resumed, member, body_of(member))
    resumed = env.gitlab.calls[calls:]
    assert [c.method for c in resumed] == ["GET"] * 200  # one list per DeployToken: exactly one resync's reads
    assert all(c.path.endswith("/deploy_tokens") for c in resumed)
    assert [dict(m.kube.resource_versions) for m in fleet] == versions  # no Secret written
    assert all(m.kube.status_writes == m.kube.status_writes[:3] for m in fleet)  # only the creation's fence writes
    assert all(ready_of(m)["status"] == "True" for m in fleet)
    assert {reason for _, reason in posted} == {"TokenCreated"}


# --- renewal time and its fallback, as the status shows them ----------------------------------------------------


def _ready_message(outcome: DeployTokenOutcome) -> str:
    status = outcome.ready_status([], 1)
    return next(c["message"] for c in status["conditions"] if c["type"] == "Ready")


def test_a_lifetime_shorter_than_renew_before_falls_back_and_says_so(dt: DT) -> None:
    short_lived(dt, lifetime=6)  # renewBefore 1h > the 6 s GitLab gave
    outcome = dt.reconcile()
    assert outcome.renewal_fallback is True
    assert outcome.ready_status([], 1)["renewalFallback"] is True
    assert "renews at two thirds of its life" in _ready_message(outcome)
    issued, renewal = parse_time(dt.status["issuedAt"]), outcome.renewal_time
    assert issued is not None and renewal is not None
    assert 3.0 <= (renewal - issued).total_seconds() <= 5.0  # two thirds of 6 s, jitter at most 10% of 2 s


def test_validfor_48h_renew_before_47h59m_renews_in_the_first_minutes(dt: DT) -> None:
    dt.gitlab.settings.deploy_token_lifetime_seconds = 48 * 3600
    dt.spec.update(validFor="48h", renewBefore="47h59m")
    outcome = dt.reconcile()
    assert outcome.renewal_fallback is False
    ready = outcome.ready_status([], 1)  # the status patch the handler writes
    assert ready["renewalFallback"] is False
    assert "two thirds" not in _ready_message(outcome)
    issued, renewal = parse_time(dt.status["issuedAt"]), parse_time(ready["renewalTime"])
    assert issued is not None and renewal is not None
    assert 60 <= (renewal - issued).total_seconds() <= 120


# --- an upgrade from a version that kept no checksum ------------------------------------------------------------


def test_a_secret_from_a_version_without_the_checksum_is_trusted_then_guarded(dt: DT) -> None:
    """After an upgrade the status has no `secretChecksum`: the Secret's credential is taken as the operator's (it
    cannot tell an edit made before the upgrade), its checksum recorded, and from then on a hand edit is repaired."""
    dt.spec["gracePeriod"] = "1s"
    first = dt.reconcile()
    del dt.kube.deploy_token_status["secretChecksum"]  # as an older version left it
    upgraded = dt.reconcile()
    assert upgraded.token_id == first.token_id and dt.posts() == 1 and dt.reasons() == ["TokenCreated"]
    assert dt.status["secretChecksum"] == hashlib.sha256(":".join(dt.credentials()).encode()).hexdigest()
    username, token = dt.credentials()
    dt.write_credentials(username, token[:-4] + "xxxx")
    repaired = dt.reconcile()
    assert repaired.token_id != first.token_id and dt.registry_accepts()
    assert [r for t, r, _ in dt.events if t == "Warning"] == ["SecretStale"]


# --- both of GitLab's expiry behaviours, and a host whose local date is ahead of UTC -----------------------------


class _FakeTime(datetime):
    """`datetime` whose `now()` is the fake GitLab's clock: the operator and GitLab share one timeline."""

    clock: Any = None

    @classmethod
    def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
        return cls.clock.now().astimezone(tz)


@pytest.mark.parametrize(("mode", "offset_minutes"), [("instant", 0), ("legacy", 0), ("legacy", 600), ("legacy", -300)])
def test_five_renewals_by_the_clock_never_leave_a_refused_credential(
    dt: DT, monkeypatch: pytest.MonkeyPatch, mode: str, offset_minutes: int
) -> None:
    """Real lifetimes (date expiries, validFor 48h, renewBefore 24h), the clock driven across five renewals. The
    operator reconciles when its daemon wakes (the renewal or grace time the outcome names) or at a two-hour resync,
    whichever comes first. The Secret changes only in a reconcile and a token only loses validity with time, so a
    sample one second before each wake covers the whole interval: each gets a pull grant from `/jwt/auth`, never
    more than two tokens are active, and every replaced token is revoked once its grace period is over."""
    clock = dt.gitlab.clock
    settings = dt.gitlab.settings
    monkeypatch.setattr(_FakeTime, "clock", clock)
    monkeypatch.setattr("glrt_operator.deploytokens.reconcile.datetime", _FakeTime)
    dt.spec.update(validFor="48h", renewBefore="24h", gracePeriod="1h")
    saved = (settings.deploy_token_expiry_mode, settings.host_utc_offset_minutes)
    settings.deploy_token_expiry_mode, settings.host_utc_offset_minutes = mode, offset_minutes
    clock.freeze()
    # 15:37 UTC: on a UTC+10 host the local date is already tomorrow; on UTC-5 it is still today.
    clock.set(datetime(2026, 12, 2, 15, 37, tzinfo=UTC))
    try:
        outcome = dt.reconcile()
        seen: list[int] = [outcome.token_id]
        refused = samples = most_active = 0
        while len(seen) < 6 and samples < 2000:
            resync = clock.now() + timedelta(hours=2)
            wake = min(resync, outcome.next_check) if outcome.next_check else resync
            clock.advance(max((wake - clock.now()).total_seconds() - 1, 0))
            samples += 2  # just before the wake, and just after it
            refused += not dt.registry_accepts()
            clock.advance(1)
            outcome = dt.reconcile()
            if outcome.token_id != seen[-1]:
                seen.append(outcome.token_id)
            refused += not dt.registry_accepts()
            most_active = max(most_active, len(dt.active()))
        clock.advance(2 * 3600)  # past the last grace period
        dt.reconcile()
        print(
            f"\n{mode} UTC{offset_minutes / 60:+.0f}h: {len(seen) - 1} renewals, {samples} samples, {refused} refused"
        )
        assert len(seen) == 6 and refused == 0 and most_active <= 2
        assert dt.active() == [seen[-1]]
        assert all(not dt.registry_accepts((f"gitlab+deploy-token-{t.id}", t.token)) for t in dt.ours()[:-1])
    finally:
        clock.unfreeze()
        clock.set(datetime.now(UTC))
        settings.deploy_token_expiry_mode, settings.host_utc_offset_minutes = saved
