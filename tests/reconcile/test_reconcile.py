"""Every branch of the reconcile path: creation, steady state, drift, a runner or token lost, rotation (request,
expiry, interruption, refusal), stray managers, adoption, the CA, and each error a user must act on."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from kubernetes.client.exceptions import ApiException

from glrt_operator.core.errors import ReconcileError
from glrt_operator.runners import builders
from glrt_operator.runners.attributes import maintenance_note
from glrt_operator.runners.context import RunnerSettings
from glrt_operator.runners.reconcile import open_context, reconcile

from .conftest import CA_PEM, LOG, UID, Env


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def test_creates_the_runner_once_and_records_it(env: Env) -> None:
    outcome = env.reconcile()
    runner = env.gitlab.runner(outcome.runner_id)
    assert runner is not None and runner.description == "builds" and runner.tag_list == ["docker"]
    assert env.reasons() == ["RunnerCreated"]
    assert env.kube.status["runnerId"] == outcome.runner_id
    assert "creationStartedAt" not in env.kube.status and "rotationStartedAt" not in env.kube.status
    # The fence went up before the POST and came down with the id.
    assert env.kube.status_writes[0].keys() == {"creationStartedAt"}
    assert fingerprint(env.runner_token()) == fingerprint(runner.token)
    assert env.token_secret()["owners"] == [UID]
    assert set(env.kube.secrets) == {"gitlab-api", "builds-runner-token", "builds-runner-config"}
    assert env.kube.sts_owners["builds"] == [UID]
    assert outcome.token_condition.reason == "Accepted"
    patch = outcome.status_patch()
    assert patch["tokenSecretName"] == "builds-runner-token" and patch["configSecretName"] == "builds-runner-config"
    assert [r["managerStatus"] for r in patch["replicas"]] == ["not_registered"]

    again = env.reconcile()  # steady state: no second runner, no write to GitLab
    assert again.runner_id == outcome.runner_id and env.posts() == 1
    assert not [c for c in env.gitlab.calls[-3:] if c.method in ("POST", "PUT")]
    assert env.reasons() == ["RunnerCreated"]


def test_repairs_drift_in_gitlab(env: Env) -> None:
    runner_id = env.reconcile().runner_id
    env.gitlab.update_runner(runner_id, description="edited in the UI", paused=True)
    env.reconcile()
    runner = env.gitlab.runner(runner_id)
    assert runner is not None and runner.description == "builds" and not runner.paused
    assert env.reasons()[-1] == "RunnerUpdated" and "description, paused" in env.events[-1][2]


def test_a_runner_deleted_in_gitlab_is_created_anew(env: Env) -> None:
    old = env.reconcile().runner_id
    env.gitlab.delete_runner(old)
    new = env.reconcile().runner_id
    assert new != old and env.kube.status["runnerId"] == new
    assert env.reasons() == ["RunnerCreated", "RunnerMissing", "RunnerCreated"]


def test_token_restored_when_its_secret_was_deleted(env: Env) -> None:
    runner_id = env.reconcile().runner_id
    del env.kube.secrets["builds-runner-token"]
    outcome = env.reconcile()
    assert outcome.runner_id == runner_id and env.posts() == 1 and env.resets() == 1
    assert env.reasons()[-1] == "TokenRestored"
    runner = env.gitlab.runner(runner_id)
    assert runner is not None and fingerprint(env.runner_token()) == fingerprint(runner.token)


def test_waits_for_objects_of_an_earlier_runner_of_the_same_name(env: Env) -> None:
    env.kube.put_secret("builds-runner-config", {"config.toml": ""}, owners=["uid-of-an-earlier-runner"])
    with pytest.raises(ReconcileError) as caught:
        env.reconcile()
    assert caught.value.reason == "WaitingForCleanup" and not caught.value.permanent
    assert env.posts() == 0


def test_name_conflict_with_an_object_nobody_owns(env: Env) -> None:
    env.kube.sts_owners["builds"] = []
    with pytest.raises(ReconcileError) as caught:
        env.reconcile()
    assert caught.value.reason == "NameConflict" and "StatefulSet 'builds'" in caught.value.message
    assert env.posts() == 0


def test_credentials_missing(env: Env) -> None:
    del env.kube.secrets["gitlab-api"]
    with pytest.raises(ReconcileError) as caught:
        env.reconcile()
    assert caught.value.reason == "CredentialsMissing" and "'gitlab-api'" in caught.value.message


def test_invalid_spec_is_permanent(env: Env) -> None:
    env.spec["replicas"] = -1
    with pytest.raises(ReconcileError) as caught:
        env.reconcile()
    assert caught.value.reason == "InvalidSpec" and caught.value.permanent


def test_ca_secret_missing(env: Env) -> None:
    env.spec["gitlab"]["caSecretRef"] = {"name": "gitlab-ca", "key": "ca.crt"}
    with pytest.raises(ReconcileError) as caught:
        env.reconcile()
    assert caught.value.reason == "CASecretMissing" and "'gitlab-ca'" in caught.value.message
    assert env.pool.requests == []


def test_ca_reaches_the_gitlab_client_the_pods_and_config_toml(env: Env) -> None:
    env.spec["gitlab"]["caSecretRef"] = {"name": "gitlab-ca", "key": "bundle.pem"}
    env.kube.put_secret("gitlab-ca", {"bundle.pem": CA_PEM})
    env.reconcile()
    assert env.pool.requests and all(ca == CA_PEM for _, _, ca in env.pool.requests)
    config = env.kube.secrets["builds-runner-config"]["data"]["config.toml"]
    assert f'tls-ca-file = "{builders.CA_FILE}"' in config
    volumes = env.kube.statefulsets["builds"]["spec"]["template"]["spec"]["volumes"]
    ca = next(v for v in volumes if v["name"] == "ca")
    assert ca["secret"]["secretName"] == "gitlab-ca" and ca["secret"]["items"] == [
        {"key": "bundle.pem", "path": "ca.crt"}
    ]


def test_without_a_ca_the_system_trust_is_used(env: Env) -> None:
    env.reconcile()
    assert env.pool.requests and all(ca is None for _, _, ca in env.pool.requests)
    assert "tls-ca-file" not in env.kube.secrets["builds-runner-config"]["data"]["config.toml"]


def test_kubernetes_refusal_becomes_a_condition_naming_the_rule(env: Env) -> None:
    body = '{"message": "statefulsets.apps \\"builds\\" is forbidden: User cannot patch resource"}'
    env.kube.fail["apply_statefulset"] = ApiException(status=403, reason="Forbidden")
    env.kube.fail["apply_statefulset"].body = body
    with pytest.raises(ReconcileError) as caught:
        env.reconcile()
    assert caught.value.reason == "KubernetesAPIError"
    assert "403 Forbidden" in caught.value.message and "cannot patch resource" in caught.value.message
    assert "Grant the operator's ServiceAccount" in caught.value.message


def test_kubernetes_refusal_while_opening_the_context(env: Env) -> None:
    env.kube.fail["read_secret"] = ApiException(status=403, reason="Forbidden")
    with pytest.raises(ReconcileError) as caught:
        env.reconcile()
    assert caught.value.reason == "KubernetesAPIError"


def test_gitlab_refusal_says_what_to_fix(env: Env) -> None:
    env.use_token("glpat-unknown")
    with pytest.raises(ReconcileError) as caught:
        env.reconcile()
    assert caught.value.reason == "AccessTokenInvalid" and "Put a valid one in" in caught.value.message
    assert "glpat-unknown" not in caught.value.message


def test_adopts_the_orphan_of_an_interrupted_creation(env: Env) -> None:
    started = datetime.now(UTC) - timedelta(minutes=1)
    env.kube.status["creationStartedAt"] = started.strftime("%Y-%m-%dT%H:%M:%SZ")
    # A runner created by the interrupted attempt (its reply lost), and one of somebody else's.
    env.gitlab.create_runner("project_type", project_ids=[7], maintenance_note="someone else's")
    orphan = env.gitlab.create_runner(
        "project_type",
        project_ids=[7],
        description="builds",
        tag_list=["docker"],
        maintenance_note=maintenance_note("", UID),
    )
    outcome = env.reconcile()
    assert outcome.runner_id == orphan.id and env.posts() == 0 and env.resets() == 1
    assert env.reasons() == ["RunnerAdopted"]  # created from this very spec: nothing to update
    assert "creationStartedAt" not in env.kube.status and env.kube.status["runnerId"] == orphan.id
    runner = env.gitlab.runner(orphan.id)
    assert runner is not None and fingerprint(env.runner_token()) == fingerprint(runner.token)


def test_orphan_search_forbidden_warns_and_creates(env: Env) -> None:
    env.use_token("glpat-both")
    env.kube.status["creationStartedAt"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    outcome = env.reconcile()
    assert env.reasons() == ["OrphanSearchForbidden", "RunnerCreated"]
    assert "read_api" in env.events[0][2] and UID in env.events[0][2]
    assert env.kube.status["runnerId"] == outcome.runner_id and env.posts() == 1


def test_orphan_search_other_failures_propagate(env: Env) -> None:
    env.kube.status["creationStartedAt"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    env.gitlab.faults.add(fault(path=r"/projects/7/runners$", status=500))
    with pytest.raises(ReconcileError) as caught:
        env.reconcile()
    assert caught.value.reason == "GitLabUnavailable" and env.posts() == 0


def fault(**kwargs: object) -> object:
    from tests.fake_gitlab import Fault

    return Fault(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("runner_type", ["group_type", "instance_type"])
def test_orphan_search_per_runner_type(env: Env, runner_type: str) -> None:
    env.spec.pop("projectId")
    env.spec["runnerType"] = runner_type
    if runner_type == "group_type":
        env.spec["groupId"] = 70
    env.kube.status["creationStartedAt"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = {"group_id": 70} if runner_type == "group_type" else {}
    orphan = env.gitlab.create_runner(runner_type, maintenance_note=maintenance_note("", UID), **fields)
    if runner_type == "instance_type":
        env.use_token("glpat-admin")
    assert env.reconcile().runner_id == orphan.id


def test_rotation_on_request_once(env: Env) -> None:
    runner_id = env.reconcile().runner_id
    before = env.runner_token()
    env.spec["tokenRotation"] = {"requestedAt": "2026-11-22T11:00:00Z"}
    outcome = env.reconcile()
    assert env.reasons()[-1] == "TokenRotated" and "requestedAt=2026-11-22T11:00:00Z" in env.events[-1][2]
    assert fingerprint(env.runner_token()) != fingerprint(before)
    assert env.kube.status["rotationRequestedAt"] == "2026-11-22T11:00:00Z" and env.kube.status["tokenRotatedAt"]
    assert "rotationStartedAt" not in env.kube.status
    assert outcome.status_patch()["rotationRequestedAt"] == "2026-11-22T11:00:00Z"
    env.reconcile()
    assert env.resets() == 1 and env.gitlab.runner(runner_id) is not None


def test_a_rotation_makes_every_running_pod_refresh_its_secret_volume_once(env: Env) -> None:
    env.spec["replicas"] = 2
    env.reconcile()
    env.kube.pods = {"builds-0", "builds-1", "builds-2", "other-0"}
    env.kube.terminating = {"builds-2"}  # a stopping pod keeps its files: no patch
    before = env.kube.read_secret("ci", "builds-runner-config")
    env.reconcile()  # pods started after the Secret's last write mounted it: nothing to tell them
    assert env.kube.pod_patches == []
    env.spec["tokenRotation"] = {"requestedAt": "2026-11-22T11:00:00Z"}
    env.reconcile()
    assert [n for n, _ in env.kube.pod_patches] == ["builds-0", "builds-1"]
    new_versions = {a[builders.ANNOTATION_CONFIG_VERSION] for _, a in env.kube.pod_patches}
    assert before is not None and len(new_versions) == 1 and new_versions != {before.resource_version}
    env.kube.pod_patches.clear()
    env.reconcile()
    assert env.kube.pod_patches == []  # nothing changed: no write


def test_pod_refresh_can_be_switched_off(env: Env) -> None:
    env.kube.pods = {"builds-0"}
    reconcile(
        open_context(env.kube, env.pool, env.ref, env.spec, env.emit, LOG, settings=RunnerSettings(refresh_pods=False))
    )  # type: ignore[arg-type]
    assert env.kube.pod_patches == []


def test_pod_ids_can_be_left_to_the_platform(env: Env) -> None:
    settings = RunnerSettings(pin_pod_ids=False)
    reconcile(open_context(env.kube, env.pool, env.ref, env.spec, env.emit, LOG, settings=settings))  # type: ignore[arg-type]
    context = env.kube.statefulsets["builds"]["spec"]["template"]["spec"]["securityContext"]
    assert "runAsUser" not in context and "fsGroup" not in context and context["runAsNonRoot"] is True


def test_rotation_before_expiry(env: Env) -> None:
    env.reconcile()
    annotations = env.token_secret()["annotations"]
    now = datetime.now(UTC)
    annotations[builders.ANNOTATION_TOKEN_OBTAINED_AT] = (now - timedelta(days=29)).strftime("%Y-%m-%dT%H:%M:%SZ")
    annotations[builders.ANNOTATION_TOKEN_EXPIRES_AT] = (now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    env.reconcile()
    assert env.resets() == 1 and env.events[-1][2].split(": ")[1].startswith("the token expires at")


def test_an_interrupted_rotation_is_finished(env: Env) -> None:
    env.reconcile()
    env.kube.status["rotationStartedAt"] = "2026-11-22T10:00:00Z"
    env.reconcile()
    assert env.resets() == 1 and "interrupted" in env.events[-1][2]
    assert "rotationStartedAt" not in env.kube.status


def test_a_refused_token_is_reissued(env: Env) -> None:
    runner_id = env.reconcile().runner_id
    env.gitlab.revoke_token(runner_id)  # rotated out of band: the stored token is dead
    outcome = env.reconcile()
    assert env.reasons()[-2:] == ["TokenRefused", "TokenRotated"]
    assert outcome.token_condition.reason == "Reissued" and outcome.token_condition.status == "True"
    runner = env.gitlab.runner(runner_id)
    assert runner is not None and fingerprint(env.runner_token()) == fingerprint(runner.token)


def register_manager(env: Env, system_id: str) -> None:
    response = httpx.post(
        env.gitlab.api_url + "/runners/verify", json={"token": env.runner_token(), "system_id": system_id}
    )
    assert response.status_code == 200, response.text


def test_stray_managers_are_removed_and_a_recent_contact_skips_the_token_check(env: Env) -> None:
    env.spec["replicas"] = 3
    runner_id = env.reconcile().runner_id
    for ordinal in range(3):
        register_manager(env, builders.system_id(UID, ordinal))
    register_manager(env, "r_unknown00000")
    env.spec["replicas"] = 1
    env.kube.pods = {"builds-0", "builds-2"}  # replica 2 is still stopping: its manager stays for now
    calls = len(env.gitlab.calls)
    outcome = env.reconcile()
    removed = {m for _, r, m in env.events if r in ("ManagerRemoved", "UnknownManagerRemoved")}
    assert removed == {
        f"Removed runner manager {builders.system_id(UID, 1)} of scaled-away replica 1",
        "Removed runner manager r_unknown00000 that belongs to no replica",
    }
    runner = env.gitlab.runner(runner_id)
    assert runner is not None
    assert set(runner.managers) == {builders.system_id(UID, 0), builders.system_id(UID, 2)}
    # Replica 2's pod still drains: listed, marked, not counted.
    assert [(r["ordinal"], r["managerStatus"], r.get("draining")) for r in outcome.replicas] == [
        (0, "online", None),
        (2, "online", True),
    ]
    assert outcome.online_replicas == 1
    # Managers contacted GitLab a moment ago: the token works, no probe was sent.
    probes = [c for c in env.gitlab.calls[calls:] if c.method == "DELETE" and c.path.endswith("/runners/managers")]
    assert len(probes) == 2
