"""A connection's own reconcile: GitLab's version and the token's facts in its status, clear conditions for a GitLab
too old, a URL that is not GitLab's API and a token without the scopes it needs, and the renewal of the token by
GitLab's self-rotation: stored before anything else, never retried with a revoked token, settled after a crash
without ever triggering GitLab's reuse detection (the fake counts both)."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from glrt_operator.connections import model
from glrt_operator.connections.reconcile import ConnectionOutcome, ConnectionRef, reconcile
from glrt_operator.core.api import CLUSTER_GITLAB_CONNECTION
from glrt_operator.core.connection import ConnectionPolicy
from glrt_operator.core.errors import ReconcileError
from glrt_operator.core.gitlab import GitLabError
from glrt_operator.core.reasons import Reason
from tests.fake_gitlab import FakeGitLab, Fault
from tests.fake_gitlab.faults import GARBLES

from .conftest import NAMESPACE, Env, InMemoryKube, RecordingPool
from .test_connections import POLICY, cluster_connection, refer

NS = "glrt-system"
LOG = logging.getLogger("tests.reconcile.connection_tokens")
REF = ConnectionRef(CLUSTER_GITLAB_CONNECTION, None, "main")


@dataclass
class Conn:
    gitlab: FakeGitLab
    kube: InMemoryKube
    pool: RecordingPool
    spec: dict[str, Any]
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def emit(self, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    def reconcile(self, policy: ConnectionPolicy = POLICY, now: datetime | None = None) -> ConnectionOutcome:
        outcome = reconcile(self.kube, self.pool, REF, self.spec, self.emit, LOG, policy, now=now)  # type: ignore[arg-type]
        self.kube.patch_status(REF.kind, None, REF.name, outcome.ready_status(None, 1))
        return outcome

    @property
    def token(self) -> str:
        value: str = self.kube.secrets[f"{NS}/gitlab-admin"]["data"]["token"]
        return value

    def put_token(self, token: str) -> None:
        self.kube.secrets[f"{NS}/gitlab-admin"] = {"annotations": {}, "data": {"token": token}, "owners": []}

    @property
    def status(self) -> dict[str, Any]:
        return self.kube.connection_status

    def rotations(self) -> int:
        return len([c for c in self.gitlab.calls if c.path.endswith("/self/rotate")])

    def assert_chain_safe(self) -> None:
        counters = self.gitlab.token_counters
        assert counters.reuse_detections == []
        assert counters.revoked_calls.get("POST /personal_access_tokens/self/rotate", 0) == 0


def new_token(gl: FakeGitLab, *, scopes: list[str] | None = None, expires_in: int | None = 10) -> str:
    value = "glpat-" + secrets.token_hex(10)
    # The seeded project owner (tokens of one user: a Runner of project 7 can be created with any of them).
    owner = next(u for u in gl._state.users.values() if u.username == "owner")
    expires = date.today() + timedelta(days=expires_in) if expires_in is not None else None
    gl.add_access_token(value, owner, scopes=scopes or ["api"], expires_at=expires, name="operator")
    return value


@pytest.fixture
def conn(env: Env) -> Iterator[Conn]:
    gl = env.gitlab
    version = gl.instance.version
    spec = {
        "url": gl.url,
        "credentialsSecretRef": {"name": "gitlab-admin", "key": "token"},
        "allowedNamespaces": {"names": [NAMESPACE]},
        "tokenRotation": {"renewBefore": "720h", "validFor": "2160h"},
    }
    c = Conn(gitlab=gl, kube=env.kube, pool=env.pool, spec=spec)
    c.put_token(new_token(gl))
    try:
        yield c
    finally:
        gl.instance.update({"version": version})


def test_status_reports_gitlab_and_the_token(conn: Conn) -> None:
    conn.put_token(new_token(conn.gitlab, expires_in=200))
    outcome = conn.reconcile()
    status = conn.status
    assert status["gitlab"]["version"] == conn.gitlab.instance.version
    assert status["gitlab"]["edition"] in ("CE", "EE") and "runnerManagers" in status["gitlab"]["features"]
    expiry = datetime.combine(date.today() + timedelta(days=200), datetime.min.time(), tzinfo=UTC)
    assert status["token"]["name"] == "operator" and status["token"]["scopes"] == ["api"]
    assert status["token"]["expiresAt"] == expiry.isoformat().replace("+00:00", "Z")
    assert outcome.next_check == expiry - timedelta(days=30)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True" and conditions["TokenRenewable"]["status"] == "True"
    assert conn.rotations() == 0  # not due


def test_gitlab_too_old(conn: Conn) -> None:
    conn.gitlab.instance.update({"version": "15.9.3-ee"})
    with pytest.raises(ReconcileError) as caught:
        conn.reconcile()
    assert caught.value.reason == Reason.GITLAB_TOO_OLD and "15.10" in caught.value.message


def test_url_that_is_not_gitlab(conn: Conn) -> None:
    conn.spec["url"] = conn.gitlab.url + "/not-gitlab"
    with pytest.raises(ReconcileError) as caught:
        conn.reconcile()
    assert "spec.url must be GitLab's base URL" in caught.value.message


def test_token_without_the_needed_scopes(conn: Conn) -> None:
    conn.put_token(new_token(conn.gitlab, scopes=["read_api"]))
    with pytest.raises(ReconcileError) as caught:
        conn.reconcile()
    assert caught.value.reason == Reason.TOKEN_SCOPES_MISSING and "read_api" in caught.value.message


def test_token_that_cannot_rotate_itself_is_ready_and_says_so(conn: Conn) -> None:
    conn.put_token(new_token(conn.gitlab, scopes=["create_runner", "manage_runner", "read_api"], expires_in=3))
    outcome = conn.reconcile()
    conditions = {c["type"]: c for c in conn.status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["TokenRenewable"]["status"] == "False"
    assert conditions["TokenRenewable"]["reason"] == Reason.ROTATION_IMPOSSIBLE
    assert "self_rotate" in conditions["TokenRenewable"]["message"]
    assert outcome.renewable is not None and conn.rotations() == 0


def test_self_rotate_scope_before_17_9(conn: Conn) -> None:
    conn.gitlab.instance.update({"version": "17.8.0"})
    conn.put_token(new_token(conn.gitlab, scopes=["self_rotate", "create_runner", "read_api"], expires_in=3))
    conn.reconcile()
    conditions = {c["type"]: c for c in conn.status["conditions"]}
    assert conditions["TokenRenewable"]["status"] == "False" and "17.9" in conditions["TokenRenewable"]["message"]
    assert conn.rotations() == 0


def test_rotation_when_due_stores_the_new_token_first(conn: Conn) -> None:
    old = conn.token
    conn.reconcile()
    new = conn.token
    assert new != old and conn.rotations() == 1
    fake_new = conn.gitlab.access_token(new)
    assert fake_new is not None and fake_new.active(conn.gitlab.clock.now())
    # The explicit expires_at: the first date at least validFor (90 days) ahead.
    assert fake_new.expires_at == model.next_expiry(datetime.now(UTC), timedelta(days=90))
    assert fake_new.expires_at in (date.today() + timedelta(days=90), date.today() + timedelta(days=91))
    assert conn.gitlab.access_token(old).revoked  # type: ignore[union-attr]
    rotate = next(c for c in conn.gitlab.calls if c.path.endswith("/self/rotate"))
    assert rotate.status == 200
    assert conn.status.get("rotationStartedAt") is None and conn.status["lastRotationTime"]
    assert conn.status["token"]["id"] == fake_new.id
    assert "AccessTokenRotated" in [reason for _, reason, _ in conn.events]
    conn.assert_chain_safe()


def test_five_rotations_while_runners_reconcile(conn: Conn, env: Env) -> None:
    """renewBefore 48h, validFor 49h, and the operator's clock two days further at each reconcile: every reconcile
    rotates; a Runner using the connection reconciles between rotations with whatever token the Secret holds."""
    conn.spec["tokenRotation"] = {"renewBefore": "48h", "validFor": "49h"}
    cluster_connection(env)
    refer(env)
    conn.put_token(new_token(conn.gitlab, expires_in=2))  # due now
    runner_id = env.reconcile().runner_id
    start = datetime.now(UTC)
    for step in range(5):
        outcome = conn.reconcile(now=start + timedelta(days=2 * step))
        assert outcome.next_check is not None and outcome.next_check > start + timedelta(days=2 * step)
        assert env.reconcile().runner_id == runner_id
    assert conn.rotations() == 5
    assert len(conn.gitlab.token_family(conn.token)) == 6
    assert env.posts() == 1
    conn.assert_chain_safe()
    assert conn.gitlab.token_counters.revoked_total == 0  # no call ever made with a revoked token


def test_crash_before_the_rotate_call(conn: Conn) -> None:
    """The fence was written, the call never sent: the token is still the active one, so the fence goes and the
    rotation happens normally."""
    info = conn.gitlab.access_token(conn.token)
    assert info is not None
    conn.kube.patch_status(
        REF.kind, None, REF.name, {"rotationStartedAt": "2026-01-01T00:00:00Z", "rotationFromTokenId": info.id}
    )
    conn.reconcile()
    assert conn.rotations() == 1 and conn.token != info.token
    assert conn.status.get("rotationStartedAt") is None
    conn.assert_chain_safe()


def test_lost_answer_is_never_retried_with_the_old_token(conn: Conn) -> None:
    """GitLab rotated, the answer never arrived (the operator could as well have been killed right after GitLab
    answered): the old token is revoked and its successor lost. The operator says so and never presents the old
    token on a rotate path again, so GitLab's reuse detection never fires and the chain is intact."""
    old = conn.token
    conn.gitlab.faults.add(Fault(method="POST", path=r"/self/rotate$", kind="drop_after_commit", count=1))
    with pytest.raises(ReconcileError) as first:
        conn.reconcile()
    assert first.value.transient and conn.status["rotationStartedAt"]
    assert conn.token == old  # nothing to store
    with pytest.raises(ReconcileError) as second:
        conn.reconcile()
    assert second.value.reason == Reason.TOKEN_ROTATION_LOST
    assert "Put a new token in Secret 'gitlab-admin' key 'token'" in second.value.message
    assert "set spec.tokenRotation.recoverySecretRef" in second.value.message
    assert conn.rotations() == 1
    successor = conn.gitlab.newest_in_family(old)
    assert successor.token != old and successor.active(conn.gitlab.clock.now())  # the chain was not revoked
    conn.assert_chain_safe()
    # The alternative the message names: a recovery token configured afterwards repairs it.
    with_recovery(conn, new_token(conn.gitlab, expires_in=300))
    conn.reconcile()
    assert [t.token for t in conn.gitlab.token_family(old)] == [old, successor.token, conn.token]
    assert conn.gitlab.access_token(conn.token).active(conn.gitlab.clock.now())  # type: ignore[union-attr]
    conn.assert_chain_safe()


@pytest.mark.parametrize("how", GARBLES)
def test_a_garbled_rotation_answer_is_a_lost_answer(conn: Conn, how: str) -> None:
    """GitLab rotated, then a proxy's page, an empty body or a token that is not one came back (issue #27): the
    outcome is unknown, exactly like a lost answer. Nothing that is not a token is stored, the fence stays, and the
    old token is never presented on a rotate path again."""
    old = conn.token
    conn.gitlab.faults.add(Fault(method="POST", path=r"/self/rotate$", kind="garble_after_commit", garble=how, count=1))
    with pytest.raises(ReconcileError) as first:
        conn.reconcile()
    assert first.value.reason in ("NotGitLab", "GitLabAnswerInvalid"), first.value.reason
    assert conn.status["rotationStartedAt"] and conn.token == old
    with pytest.raises(ReconcileError) as second:
        conn.reconcile()
    assert second.value.reason == Reason.TOKEN_ROTATION_LOST
    assert conn.rotations() == 1 and conn.token == old
    assert conn.gitlab.newest_in_family(old).active(conn.gitlab.clock.now())  # the successor GitLab made lives
    conn.assert_chain_safe()


def test_crash_after_the_secret_write(conn: Conn) -> None:
    """Rotated and stored, killed before the fence was cleared: the Secret's token is the successor."""
    old = conn.token
    info = conn.gitlab.access_token(old)
    assert info is not None
    conn.kube.patch_status(
        REF.kind, None, REF.name, {"rotationStartedAt": "2026-01-01T00:00:00Z", "rotationFromTokenId": info.id}
    )
    until = (date.today() + timedelta(days=200)).isoformat()
    answer = httpx.post(
        f"{conn.gitlab.url}/api/v4/personal_access_tokens/self/rotate",
        headers={"PRIVATE-TOKEN": old},
        json={"expires_at": until},
    )
    assert answer.status_code == 200
    conn.put_token(answer.json()["token"])
    calls = conn.rotations()
    conn.reconcile()
    assert conn.rotations() == calls  # not due any more: no second rotation
    assert conn.status.get("rotationStartedAt") is None and conn.status["lastRotationTime"]
    assert conn.token == answer.json()["token"]
    conn.assert_chain_safe()


def test_refused_rotation_clears_the_fence(conn: Conn) -> None:
    """A 4xx means GitLab did nothing: the old token still works, the fence goes, the next attempt may rotate."""
    conn.gitlab.faults.add(Fault(method="POST", path=r"/self/rotate$", kind="status", status=400, count=1))
    old = conn.token
    with pytest.raises(ReconcileError):
        conn.reconcile()
    assert conn.status.get("rotationStartedAt") is None and conn.token == old
    conn.reconcile()
    assert conn.token != old
    conn.assert_chain_safe()


def test_cluster_connection_needs_its_secret_namespace(conn: Conn) -> None:
    with pytest.raises(ReconcileError) as caught:
        conn.reconcile(replace(POLICY, secret_namespace=None))
    assert caught.value.reason == Reason.CONNECTION_INVALID
    assert conn.gitlab.calls == []


def test_a_client_made_before_a_rotation_sends_the_successor(conn: Conn) -> None:
    """A Runner's or DeployToken's reconcile made its client from the Secret's token; the connection rotates that
    token before the client sends. The client sends the successor: GitLab never sees the revoked token. So does a
    client made after the rotation from the old token (a Secret read before the new token was written)."""
    old = conn.token
    api_url = conn.gitlab.url + "/api/v4"
    before = conn.pool.client(api_url, old)
    conn.reconcile()
    assert conn.rotations() == 1 and conn.token != old
    assert conn.gitlab.access_token(old).revoked  # type: ignore[union-attr]
    after = conn.pool.client(api_url, old)
    for client in (before, after, conn.pool.for_resyncs().client(api_url, old)):
        assert client.access_token_self().id == conn.status["token"]["id"]
        assert client.current_token() == conn.token
    assert conn.gitlab.token_counters.revoked_total == 0
    conn.assert_chain_safe()


def test_a_call_in_flight_finishes_before_the_rotation_is_sent(conn: Conn) -> None:
    """A call with the old token is still on its way when the rotation is due: the rotate waits for it (GitLab would
    otherwise authenticate it after revoking its token), and calls started meanwhile wait for the successor."""
    old = conn.token
    api_url = conn.gitlab.url + "/api/v4"
    conn.gitlab.faults.add(Fault(method="GET", path=r"/metadata$", kind="latency", seconds=1.0, count=1))
    results: list[Any] = []
    slow = threading.Thread(target=lambda: results.append(conn.pool.client(api_url, old).instance_metadata()))
    slow.start()
    time.sleep(0.3)  # the slow call is in flight
    conn.reconcile()
    slow.join(10)
    assert results and results[0].version == conn.gitlab.instance.version
    assert conn.rotations() == 1 and conn.token != old
    paths = [c.path for c in conn.gitlab.calls]
    rotate = next(i for i, p in enumerate(paths) if p.endswith("/self/rotate"))
    assert paths.index("/api/v4/metadata") < rotate  # answered before the rotate was handled
    assert conn.gitlab.token_counters.revoked_total == 0
    conn.assert_chain_safe()


def test_calls_are_held_back_while_a_rotation_is_in_doubt(conn: Conn) -> None:
    """The rotate's answer was lost: whether the token still works is unknown, so the process sends nothing with it
    (TokenRotating, nothing sent) until the connection's reconcile settles it with GET .../self."""
    old = conn.token
    api_url = conn.gitlab.url + "/api/v4"
    conn.gitlab.faults.add(Fault(method="POST", path=r"/self/rotate$", kind="status", status=502, count=1))
    with pytest.raises(ReconcileError):
        conn.reconcile()
    user = conn.pool.client(api_url, old)
    calls = len(conn.gitlab.calls)
    with pytest.raises(GitLabError) as caught:
        user.instance_metadata()
    assert caught.value.reason == Reason.TOKEN_ROTATING and caught.value.nothing_done
    assert len(conn.gitlab.calls) == calls  # not sent
    conn.reconcile()  # the fence: the token is still active (a 502 before GitLab acted), then the due rotation
    assert conn.rotations() == 2 and conn.token != old  # the refused one and the one done
    assert user.instance_metadata().version == conn.gitlab.instance.version
    assert conn.gitlab.token_counters.revoked_total == 0
    conn.assert_chain_safe()


def lose_a_rotation(conn: Conn) -> str:
    """GitLab rotates, its answer never arrives: the old token (returned) is revoked, its successor unknown."""
    old = conn.token
    conn.gitlab.faults.add(Fault(method="POST", path=r"/self/rotate$", kind="drop_after_commit", count=1))
    with pytest.raises(ReconcileError) as caught:
        conn.reconcile()
    assert caught.value.transient and conn.status["rotationStartedAt"] and conn.token == old
    assert conn.gitlab.access_token(old).revoked  # type: ignore[union-attr]
    return old


def with_recovery(conn: Conn, token: str) -> None:
    conn.kube.secrets[f"{NS}/gitlab-recovery"] = {"annotations": {}, "data": {"token": token}, "owners": []}
    conn.spec["tokenRotation"] = {**conn.spec["tokenRotation"], "recoverySecretRef": {"name": "gitlab-recovery"}}


@pytest.mark.parametrize("rescuer", ["same user", "administrator"])
def test_lost_rotation_is_recovered_with_the_recovery_token(conn: Conn, rescuer: str) -> None:
    """With spec.tokenRotation.recoverySecretRef, the lost successor is found (the user's active token of the same
    name and scopes, newer than the rotated one) and rotated by id with the recovery token: the Secret ends with a
    token GitLab accepts, the revoked token is never presented on a rotate path, reuse detection never fires."""
    # The same user's other token, named like the connection's (it must never be taken for the successor).
    recovery = new_token(conn.gitlab, expires_in=300) if rescuer == "same user" else "glpat-admin"
    old = lose_a_rotation(conn)
    lost = conn.gitlab.newest_in_family(old)
    with_recovery(conn, recovery)
    outcome = conn.reconcile()
    new = conn.token
    assert new not in (old, lost.token, recovery)
    found = conn.gitlab.access_token(new)
    assert found is not None and found.active(conn.gitlab.clock.now())
    assert [t.token for t in conn.gitlab.token_family(old)] == [old, lost.token, new]
    assert conn.gitlab.access_token(lost.id).revoked  # type: ignore[union-attr]
    assert found.expires_at == model.next_expiry(datetime.now(UTC), timedelta(days=90))  # explicit
    by_id = [c for c in conn.gitlab.calls if c.path == f"/api/v4/personal_access_tokens/{lost.id}/rotate"]
    assert [c.status for c in by_id] == [200]
    assert conn.status.get("rotationStartedAt") is None and conn.status["token"]["id"] == found.id
    assert outcome.renewable is None and "AccessTokenRecovered" in [r for _, r, _ in conn.events]
    assert conn.gitlab.access_token(recovery).active(conn.gitlab.clock.now())  # type: ignore[union-attr]
    conn.assert_chain_safe()
    assert not [p for p in conn.gitlab.token_counters.revoked_calls if "rotate" in p]
    rotates = len([c for c in conn.gitlab.calls if c.path.endswith("/rotate")])
    conn.reconcile()  # settled: nothing more to do
    assert conn.token == new and len([c for c in conn.gitlab.calls if c.path.endswith("/rotate")]) == rotates


def test_a_crash_during_the_recovery_is_recovered_again(conn: Conn) -> None:
    """The rotate by id is answered and the answer lost too: the fence stays, and the next attempt finds the newer
    successor the same way (never presenting a revoked token)."""
    old = lose_a_rotation(conn)
    with_recovery(conn, new_token(conn.gitlab, expires_in=300))
    by_id = r"/personal_access_tokens/\d+/rotate$"
    conn.gitlab.faults.add(Fault(method="POST", path=by_id, kind="drop_after_commit", count=1))
    with pytest.raises(ReconcileError) as caught:
        conn.reconcile()
    assert caught.value.transient and conn.status["rotationStartedAt"] and conn.token == old
    conn.reconcile()
    family = conn.gitlab.token_family(old)
    assert len(family) == 4 and family[-1].token == conn.token
    assert family[-1].active(conn.gitlab.clock.now()) and all(t.revoked for t in family[:-1])
    assert conn.status.get("rotationStartedAt") is None
    conn.assert_chain_safe()


def test_a_recovery_token_of_another_user_is_refused_clearly(conn: Conn) -> None:
    stranger = conn.gitlab.add_user("stranger-" + secrets.token_hex(3))
    value = "glpat-" + secrets.token_hex(10)
    conn.gitlab.add_access_token(value, stranger, scopes=["api"], name="operator")
    old = lose_a_rotation(conn)
    with_recovery(conn, value)
    with pytest.raises(ReconcileError) as caught:
        conn.reconcile()
    assert caught.value.reason == Reason.TOKEN_ROTATION_LOST and "may not see token" in caught.value.message
    assert "Secret 'gitlab-recovery'" in caught.value.message and value not in caught.value.message
    successor = conn.gitlab.newest_in_family(old)
    assert successor.token != old and successor.active(conn.gitlab.clock.now())  # nothing rotated or revoked
    conn.assert_chain_safe()
