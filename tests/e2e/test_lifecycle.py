"""The Runner lifecycle, end to end: the operator process against the real kube-apiserver and the fake GitLab."""

from __future__ import annotations

import time
import tomllib
from typing import Any

import httpx
import pytest
from kubernetes import client

from glrt_operator.core.api import GROUP, VERSION
from tests.e2e.conftest import PAT, PROJECT_ID, Runners, assert_same_token, reads_of
from tests.fake_gitlab import FakeGitLab, Fault
from tests.harness.controlplane import ControlPlane
from tests.harness.operator import OperatorProcess
from tests.harness.runner_pod import EmulatedRunnerPod
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster


def calls(gitlab: FakeGitLab, method: str, path_suffix: str) -> list[Any]:
    return [c for c in gitlab.calls if c.method == method and c.path.endswith(path_suffix)]


def delete_in_gitlab(gitlab: FakeGitLab, runner_id: int) -> None:
    """What someone deleting the runner in GitLab's UI does."""
    response = httpx.delete(f"{gitlab.api_url}/runners/{runner_id}", headers={"PRIVATE-TOKEN": PAT})
    assert response.status_code == 204


def owned_by(obj: Any, runner: dict[str, Any]) -> bool:
    refs = obj.metadata.owner_references or []
    return any(r.uid == runner["metadata"]["uid"] and r.controller for r in refs)


def test_create_registers_one_runner_and_its_children(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    runners.create(runners.manifest())
    body = runners.wait_ready()
    status = body["status"]

    assert len(calls(gitlab, "POST", "/user/runners")) == 1
    assert len(gitlab.runners) == 1
    runner = gitlab.runners[status["runnerId"]]
    assert runner.runner_type == "project_type" and PROJECT_ID in runner.project_ids
    assert runner.description == "builds for team A"
    assert sorted(runner.tag_list) == ["docker", "linux"]
    assert runner.run_untagged is False and runner.locked is True and runner.maximum_timeout == 3600

    token = runners.secret_data(status["tokenSecretName"])["token"]
    assert_same_token(token, runner.token, "token Secret vs GitLab")
    assert token.startswith("glrt-")

    config_data = runners.secret_data(status["configSecretName"])
    config = tomllib.loads(config_data["config.toml"])
    assert config["runners"][0]["url"] == gitlab.url
    assert_same_token(config["runners"][0]["token"], token, "config.toml vs token Secret")
    assert config["runners"][0]["id"] == runner.id
    assert {k for k in config_data if k.startswith("system-id-")} == {"system-id-0", "system-id-1"}

    sts = runners.apps.read_namespaced_stateful_set("builds", runners.namespace)
    assert sts.spec.replicas == 2
    for obj in (
        sts,
        runners.core.read_namespaced_secret(status["tokenSecretName"], runners.namespace),
        runners.core.read_namespaced_secret(status["configSecretName"], runners.namespace),
    ):
        assert owned_by(obj, body)
    assert status["observedGeneration"] == body["metadata"]["generation"]
    wait_for(
        lambda: "RunnerCreated" in runners.event_reasons(), timeout=10, message="the Event (posted asynchronously)"
    )


def test_spec_edit_updates_gitlab_with_put(runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess) -> None:
    runners.create(runners.manifest())
    runner_id = runners.wait_ready()["status"]["runnerId"]
    puts_before = len(calls(gitlab, "PUT", f"/runners/{runner_id}"))

    runners.patch_spec(description="edited", tags=["linux", "arm64"], paused=True, replicas=1)
    wait_for(lambda: gitlab.runners[runner_id].description == "edited", timeout=30, message="PUT applied")
    runners.wait_ready()

    runner = gitlab.runners[runner_id]
    assert sorted(runner.tag_list) == ["arm64", "linux"] and runner.paused is True
    put_calls = calls(gitlab, "PUT", f"/runners/{runner_id}")
    assert len(put_calls) == puts_before + 1
    assert set(put_calls[-1].body_keys) == {"description", "tag_list", "paused"}
    assert len(calls(gitlab, "POST", "/user/runners")) == 1
    sts = runners.apps.read_namespaced_stateful_set("builds", runners.namespace)
    assert sts.spec.replicas == 1


def test_drift_in_gitlab_is_repaired_on_the_resync_timer(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    runners.create(runners.manifest())
    runner_id = runners.wait_ready()["status"]["runnerId"]

    gitlab.update_runner(runner_id, description="changed in the UI", locked=False)
    wait_for(lambda: gitlab.runners[runner_id].description == "builds for team A", timeout=30, message="drift fixed")
    assert gitlab.runners[runner_id].locked is True
    wait_for(lambda: "RunnerUpdated" in runners.event_reasons(), timeout=10, message="RunnerUpdated event")


def test_runner_deleted_in_gitlab_is_recreated(runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess) -> None:
    runners.create(runners.manifest())
    old_id = runners.wait_ready()["status"]["runnerId"]

    delete_in_gitlab(gitlab, old_id)
    new_id = wait_for(
        lambda: (rid := runners.get()["status"].get("runnerId")) not in (None, old_id) and rid,
        timeout=30,
        message="a new runner id",
    )
    runners.wait_ready()
    assert set(gitlab.runners) == {new_id}
    token = runners.secret_data("builds-runner-token")["token"]
    assert_same_token(token, gitlab.runners[new_id].token, "token Secret vs GitLab")
    config = tomllib.loads(runners.secret_data("builds-runner-config")["config.toml"])
    assert_same_token(config["runners"][0]["token"], token, "config.toml vs token Secret")
    assert config["runners"][0]["id"] == new_id
    wait_for(
        lambda: "RunnerMissing" in runners.event_reasons(), timeout=10, message="the Event (posted asynchronously)"
    )


def test_delete_removes_the_runner_in_gitlab_and_the_children(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    runners.create(runners.manifest())
    runner_id = runners.wait_ready()["status"]["runnerId"]

    runners.delete()
    wait_for(lambda: not runners.exists(), timeout=30, message="Runner gone")
    assert runner_id not in gitlab.runners
    assert len(calls(gitlab, "DELETE", f"/runners/{runner_id}")) == 1

    def children_gone() -> bool:
        secrets = runners.core.list_namespaced_secret(runners.namespace, label_selector="glrt.dev/runner=builds")
        sets = runners.apps.list_namespaced_stateful_set(runners.namespace)
        return not secrets.items and not sets.items

    wait_for(children_gone, timeout=60, message="garbage collection of the children")


def test_delete_tolerates_a_runner_already_gone(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    runners.create(runners.manifest())
    runner_id = runners.wait_ready()["status"]["runnerId"]
    delete_in_gitlab(gitlab, runner_id)
    runners.delete()
    wait_for(lambda: not runners.exists(), timeout=30, message="Runner gone despite the 404")


def test_delete_keeps_retrying_while_gitlab_fails(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    runners.create(runners.manifest())
    runner_id = runners.wait_ready()["status"]["runnerId"]
    gitlab.faults.add(Fault(method="DELETE", path=rf"/runners/{runner_id}$", kind="status", status=503))

    runners.delete()
    condition = runners.wait_reason("GitLabUnavailable")
    assert "503" in condition["message"]
    assert runners.exists() and runner_id in gitlab.runners  # the finalizer holds the Runner back

    gitlab.faults.clear()
    wait_for(lambda: not runners.exists(), timeout=30, message="Runner gone after GitLab recovered")
    assert runner_id not in gitlab.runners


# --- bad input ------------------------------------------------------------------------------------------------


def test_schema_refuses_bad_manifests_at_apply_time(control_plane: ControlPlane, runners: Runners) -> None:
    import yaml

    bad = runners.manifest(projectId=None)
    del bad["spec"]["projectId"]
    cases = [
        (bad, "projectId is required when runnerType is project_type"),
        (runners.manifest(runnerType="shared"), 'Unsupported value: "shared"'),
        (runners.manifest(maximumTimeout=60), "should be greater than or equal to 600"),
        (runners.manifest(runUntagged=False, tags=[]), "tags must not be empty when runUntagged is false"),
        (runners.manifest(groupId=3), "groupId is only allowed when runnerType is group_type"),
    ]
    for manifest, message in cases:
        result = control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest), check=False)
        assert result.returncode != 0, manifest
        assert message in result.stderr, result.stderr
    assert not runners.custom.list_namespaced_custom_object(GROUP, VERSION, runners.namespace, "runners")["items"]


def test_missing_credentials_secret_recovers_once_created(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    runners.core.delete_namespaced_secret("gitlab-api", runners.namespace)
    runners.create(runners.manifest())
    condition = runners.wait_reason("CredentialsMissing")
    assert "gitlab-api" in condition["message"] and condition["status"] == "False"
    assert not gitlab.runners

    runners.put_secret("gitlab-api", {"token": PAT})
    runners.wait_ready(timeout=60)
    assert len(gitlab.runners) == 1


@pytest.mark.parametrize(
    ("scopes", "reason", "hint"),
    [
        (None, "AccessTokenInvalid", "unknown, expired or revoked"),
        (["read_api"], "AccessTokenForbidden", "create_runner"),
    ],
)
def test_bad_access_token_is_reported_and_recovers(
    runners: Runners,
    gitlab: FakeGitLab,
    operator: OperatorProcess,
    scopes: list[str] | None,
    reason: str,
    hint: str,
) -> None:
    bad = "glpat-not-good-enough-0001"
    if scopes is not None:
        gitlab.add_access_token(bad, gitlab.add_user("reader"), scopes=scopes)
    runners.put_secret("gitlab-api", {"token": bad})
    runners.create(runners.manifest())
    condition = runners.wait_reason(reason)
    assert hint in condition["message"]
    wait_for(lambda: reason in runners.event_reasons(), timeout=10, message="the Event (posted asynchronously)")

    runners.put_secret("gitlab-api", {"token": PAT})
    runners.wait_ready(timeout=60)
    assert len(gitlab.runners) == 1


def test_unknown_project_is_reported(runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess) -> None:
    runners.create(runners.manifest(projectId=999))
    condition = runners.wait_reason("GitLabRejected")
    assert "Missing/invalid project" in condition["message"]
    assert not gitlab.runners


def test_gitlab_outage_and_rate_limit_are_retried_with_backoff(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    gitlab.faults.add(Fault(method="POST", path=r"/user/runners$", kind="status", status=503, count=2))
    gitlab.faults.add(Fault(method="POST", path=r"/user/runners$", kind="rate_limit_rack", retry_after=3, count=1))
    runners.create(runners.manifest())
    runners.wait_ready(timeout=60)

    attempts = calls(gitlab, "POST", "/user/runners")
    assert [c.status for c in attempts] == [503, 503, 429, 201]
    assert (attempts[3].time - attempts[2].time).total_seconds() >= 2.9  # Retry-After honoured
    assert len(gitlab.runners) == 1


# --- exactly one runner, whatever happens -----------------------------------------------------------------------


def test_lost_reply_to_create_is_adopted_not_duplicated(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    gitlab.faults.add(Fault(method="POST", path=r"/user/runners$", kind="drop_after_commit", count=1))
    runners.create(runners.manifest())
    body = runners.wait_ready()

    assert len(gitlab.runners) == 1
    assert len(calls(gitlab, "POST", "/user/runners")) == 1
    runner = gitlab.runners[body["status"]["runnerId"]]
    assert runners.secret_data("builds-runner-token")["token"] == runner.token  # reset: the lost token is dead
    wait_for(
        lambda: "RunnerAdopted" in runners.event_reasons(), timeout=10, message="the Event (posted asynchronously)"
    )


@pytest.mark.parametrize("garble", ["html", "token-null", "see-other"])
def test_garbled_answer_to_create_is_adopted_and_deletion_leaves_nothing(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess, garble: str
) -> None:
    """GitLab made the runner and something in between answered a page, a null token or a redirect (issue #27):
    one runner, adopted with a token GitLab accepts, none left after deletion."""
    fault = Fault(method="POST", path=r"/user/runners$", kind="garble_after_commit", garble=garble, count=1)
    gitlab.faults.add(fault)
    runners.create(runners.manifest())
    body = runners.wait_ready()

    assert fault.hits == 1 and len(calls(gitlab, "POST", "/user/runners")) == 1 and len(gitlab.runners) == 1
    runner = gitlab.runners[body["status"]["runnerId"]]
    assert_same_token(runners.secret_data("builds-runner-token")["token"], runner.token, "adopted, then reset")
    wait_for(lambda: "RunnerAdopted" in runners.event_reasons(), timeout=10, message="the Event")
    runners.delete()
    wait_for(lambda: not runners.exists(), timeout=30, message="Runner gone")
    assert gitlab.runners == {}


def test_an_access_token_without_manage_runner_still_deletes_its_runner(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    """create_runner alone creates the runner; GitLab refuses it the deletion (403), so the runner deletes itself
    with its own token (issue #27) instead of the Runner waiting for ever."""
    create_only = "glpat-create-runner-only-0001"
    bot = gitlab.add_user("create-bot")
    gitlab.add_project_member(PROJECT_ID, bot, "maintainer")
    gitlab.add_access_token(create_only, bot, scopes=["create_runner"])
    runners.put_secret("gitlab-api", {"token": create_only})
    runners.create(runners.manifest())
    runner_id = wait_for(lambda: runners.get().get("status", {}).get("runnerId"), timeout=60, message="created")
    assert runner_id in gitlab.runners

    runners.delete()
    wait_for(lambda: not runners.exists(), timeout=30, message="Runner gone")
    assert runner_id not in gitlab.runners
    refused = calls(gitlab, "DELETE", f"/runners/{runner_id}")
    assert refused and {c.status for c in refused} == {403}
    assert [c.status for c in calls(gitlab, "DELETE", "/api/v4/runners")] == [204]
    warning = next(e for e in runners.events() if e.reason == "RunnerDeleteForbidden")
    assert warning.type == "Warning" and "manage_runner" in warning.message


def test_lost_reply_without_read_api_creates_anew_and_says_so(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    """create_runner + manage_runner cannot list runners: the operator cannot find the orphan, says so in an
    Event naming the ownership marker, and still converges to one working runner of its own."""
    narrow = "glpat-create-and-manage-only-01"
    bot = gitlab.add_user("ci-bot")
    gitlab.add_project_member(PROJECT_ID, bot, "maintainer")
    gitlab.add_access_token(narrow, bot, scopes=["create_runner", "manage_runner"])
    runners.put_secret("gitlab-api", {"token": narrow})
    gitlab.faults.add(Fault(method="POST", path=r"/user/runners$", kind="drop_after_commit", count=1))
    body = runners.create(runners.manifest())
    status = runners.wait_ready()["status"]

    assert len(calls(gitlab, "POST", "/user/runners")) == 2
    assert_same_token(
        runners.secret_data("builds-runner-token")["token"], gitlab.runners[status["runnerId"]].token, "adopted"
    )
    warning = next(e for e in runners.events() if e.reason == "OrphanSearchForbidden")
    assert body["metadata"]["uid"] in warning.message and "read_api" in warning.message


def test_operator_killed_right_after_gitlab_created_the_runner(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    # GitLab creates the runner, then holds the reply: the operator is killed before it can write anything.
    gitlab.faults.add(Fault(method="POST", path=r"/user/runners$", kind="hold_after_commit", seconds=30, count=1))
    runners.create(runners.manifest())
    first_id = wait_for(gitlab.runner_ids, timeout=30, message="runner created in GitLab")[0]
    operator.kill()
    assert "runnerId" not in runners.get().get("status", {})
    assert not runners.core.list_namespaced_secret(runners.namespace, label_selector="glrt.dev/runner=builds").items

    gitlab.faults.clear()
    operator.start()
    body = runners.wait_ready(timeout=60)
    runner_id = body["status"]["runnerId"]
    assert gitlab.runner_ids() == [first_id] and runner_id == first_id  # adopted, not created again
    assert [c.status for c in calls(gitlab, "POST", "/user/runners")] in ([], [201])  # the held call, at most
    assert_same_token(runners.secret_data("builds-runner-token")["token"], gitlab.runners[runner_id].token, "stored")


def test_operator_restart_does_not_create_again(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    runners.create(runners.manifest())
    runner_id = runners.wait_ready()["status"]["runnerId"]
    operator.stop()
    before = reads_of(gitlab, runner_id)
    operator.start()
    wait_for(lambda: reads_of(gitlab, runner_id) > before, timeout=30, message="resumed")
    runners.wait_ready()
    assert len(gitlab.runners) == 1 and len(calls(gitlab, "POST", "/user/runners")) == 1
    assert not calls(gitlab, "POST", "/reset_authentication_token")


def test_an_object_in_the_way_is_reported_before_anything_is_created(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    """A Secret with the operator's name for this Runner, not made by it (by hand, or pointing at some other
    runner): nothing is created in GitLab and nothing adopted until it is gone."""
    foreign = gitlab.create_runner("project_type", project_ids=[PROJECT_ID])
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name="builds-runner-token", annotations={"glrt.dev/runner-id": str(foreign.id)}),
        string_data={"token": foreign.token},
    )
    runners.core.create_namespaced_secret(runners.namespace, secret)
    runners.create(runners.manifest())
    condition = runners.wait_reason("NameConflict")
    assert "Secret 'builds-runner-token' already exists" in condition["message"]
    assert gitlab.runner_ids() == [foreign.id] and not calls(gitlab, "POST", "/user/runners")

    runners.core.delete_namespaced_secret("builds-runner-token", runners.namespace)
    runner_id = runners.wait_ready(timeout=60)["status"]["runnerId"]
    assert runner_id != foreign.id and set(gitlab.runner_ids()) == {foreign.id, runner_id}
    assert_same_token(runners.secret_data("builds-runner-token")["token"], gitlab.runners[runner_id].token, "stored")


def test_a_users_service_account_of_the_runners_name_is_refused_and_survives_the_runner(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    """The manager pods' ServiceAccount `<runner>-runner` made by someone else is not adopted (it would get the
    Runner's ownerReference and be garbage-collected with it): NameConflict, nothing in GitLab."""
    account = client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="builds-runner", labels={"team": "mine"}))
    runners.core.create_namespaced_service_account(runners.namespace, account)
    runners.create(runners.manifest())
    condition = runners.wait_reason("NameConflict")
    assert "ServiceAccount 'builds-runner' already exists" in condition["message"]
    assert not calls(gitlab, "POST", "/user/runners") and not gitlab.runners

    runners.delete()
    wait_for(lambda: not runners.exists(), timeout=30, message="Runner gone")
    # The garbage collector acts within seconds of the owner's deletion (sa_adopt showed ~1 s): give it 5.
    for _ in range(10):
        kept = runners.core.read_namespaced_service_account("builds-runner", runners.namespace)
        assert not kept.metadata.owner_references and kept.metadata.labels == {"team": "mine"}
        time.sleep(0.5)


def test_a_users_role_binding_of_the_executors_name_is_refused_and_kept(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    """A RoleBinding where jobs run (here the Runner's own namespace) with the name the operator would give the
    executor's: not taken over (its roleRef and subjects are someone else's), not deleted with the Runner."""
    name = f"glrt.{runners.namespace}.builds"
    rbac = client.RbacAuthorizationV1Api(runners.core.api_client)
    rbac.create_namespaced_role_binding(
        runners.namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=name),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="view"),
            subjects=[client.RbacV1Subject(kind="User", name="alice", api_group="rbac.authorization.k8s.io")],
        ),
    )
    runners.create(runners.manifest())
    condition = runners.wait_reason("NameConflict")
    assert f"RoleBinding {name!r} already exists" in condition["message"]
    assert not calls(gitlab, "POST", "/user/runners")
    runners.delete()
    wait_for(lambda: not runners.exists(), timeout=30, message="Runner gone")
    kept = rbac.read_namespaced_role_binding(name, runners.namespace)
    assert kept.role_ref.name == "view" and not kept.metadata.labels


def test_steady_state_makes_no_gitlab_writes(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess, kube: client.ApiClient
) -> None:
    runners.create(runners.manifest(replicas=1))
    runner_id = runners.wait_ready()["status"]["runnerId"]
    pod = EmulatedRunnerPod(kube, runners.namespace, "builds-runner-config", 0).start()
    try:
        wait_for(lambda: gitlab.runners[runner_id].managers, timeout=10, message="the pod polls")
        start = len(gitlab.calls)
        first = reads_of(gitlab, runner_id)
        wait_for(lambda: reads_of(gitlab, runner_id) >= first + 3, timeout=30, message="resyncs")
    finally:
        pod.stop()
    operator_calls = [c for c in gitlab.calls[start:] if not c.path.endswith("/jobs/request")]
    reads = [c for c in operator_calls if c.method == "GET" or c.path.endswith("/api/graphql")]  # GraphQL reads
    assert operator_calls and reads == operator_calls, operator_calls


def test_status_and_condition_are_reported(runners: Runners, operator: OperatorProcess) -> None:
    runners.create(runners.manifest())
    status = runners.wait_ready()["status"]
    assert status["tokenSecretName"] == "builds-runner-token"
    assert status["configSecretName"] == "builds-runner-config"
    assert status.get("tokenExpiresAt") is None  # the fake sets no expiry interval; a merge patch drops nulls
    ready = runners.condition()
    assert ready["reason"] == "Reconciled" and ready["lastTransitionTime"]


def test_printer_columns(control_plane: ControlPlane, runners: Runners, operator: OperatorProcess) -> None:
    runners.create(runners.manifest())
    runner_id = runners.wait_ready()["status"]["runnerId"]
    # Fully qualified: kubectl caches discovery, and another test may have served "runners" in a group of its own.
    table = control_plane.kubectl("get", f"runners.{GROUP}", "-n", runners.namespace).stdout
    header, row = table.splitlines()[:2]
    for column in ("NAME", "RUNNER ID", "TYPE", "REPLICAS", "READY REPLICAS", "TOKEN EXPIRES", "READY", "AGE"):
        assert column in header
    assert row.split()[:5] == ["builds", str(runner_id), "project_type", "2", "0"]
    assert row.split()[5] == "True"


def test_kubernetes_rejects_status_writes_without_the_subresource(runners: Runners) -> None:
    created = runners.create(runners.manifest())
    created["status"] = {"runnerId": 42}
    replaced = runners.custom.replace_namespaced_custom_object(
        GROUP, VERSION, runners.namespace, "runners", "builds", created
    )
    assert "status" not in replaced or "runnerId" not in replaced.get("status", {})
    with pytest.raises(client.ApiException):
        runners.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, runners.namespace, "runners", "builds", {"status": {"runnerId": "x"}}
        )
