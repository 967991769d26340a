"""Every branch of the delete path: with the access token, with the runner's own token (and its CA), an orphan of
an interrupted creation, nothing to delete, and the errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from glrt_operator.core.errors import ReconcileError
from glrt_operator.runners.attributes import maintenance_note
from tests.fake_gitlab import Fault

from .conftest import CA_PEM, UID, Env


def test_deletes_the_runner_in_gitlab(env: Env) -> None:
    runner_id = env.reconcile().runner_id
    env.delete()
    assert env.gitlab.runner(runner_id) is None and env.reasons()[-1] == "RunnerDeleted"


def test_a_runner_already_gone_counts_as_deleted(env: Env) -> None:
    runner_id = env.reconcile().runner_id
    env.gitlab.delete_runner(runner_id)
    env.delete()
    assert env.reasons() == ["RunnerCreated"]


def test_never_reached_gitlab_nothing_to_do(env: Env) -> None:
    del env.kube.secrets["gitlab-api"]  # not even needed
    env.delete()
    assert env.gitlab.calls == [] and env.events == []


def test_runner_id_from_the_token_secret_when_the_status_lost_it(env: Env) -> None:
    runner_id = env.reconcile().runner_id
    env.kube.status.clear()
    env.delete()
    assert env.gitlab.runner(runner_id) is None


@pytest.mark.parametrize("with_ca", [False, True])
def test_with_the_runners_own_token_when_the_access_token_is_gone(env: Env, with_ca: bool) -> None:
    if with_ca:
        env.spec["gitlab"]["caSecretRef"] = {"name": "gitlab-ca"}
        env.kube.put_secret("gitlab-ca", {"ca.crt": CA_PEM})
    runner_id = env.reconcile().runner_id
    del env.kube.secrets["gitlab-api"]  # e.g. the namespace is being deleted
    env.pool.requests.clear()
    env.delete()
    assert env.gitlab.runner(runner_id) is None
    assert env.events[-1][1:] == ("RunnerDeleted", f"Deleted runner {runner_id} in GitLab with its own token")
    # The client without an access token still verifies GitLab with the Runner's CA.
    assert env.pool.requests == [(env.gitlab.api_url, False, CA_PEM if with_ca else None)]
    by_token = [c for c in env.gitlab.calls if c.method == "DELETE" and c.path.endswith("/api/v4/runners")]
    assert len(by_token) == 1


def test_with_the_runners_own_token_already_gone(env: Env) -> None:
    runner_id = env.reconcile().runner_id
    env.gitlab.delete_runner(runner_id)
    del env.kube.secrets["gitlab-api"]
    env.delete()
    assert env.reasons() == ["RunnerCreated"]


def test_without_any_token_the_error_stays(env: Env) -> None:
    env.reconcile()
    del env.kube.secrets["gitlab-api"]
    del env.kube.secrets["builds-runner-token"]
    with pytest.raises(ReconcileError) as caught:
        env.delete()
    assert caught.value.reason == "CredentialsMissing"


def test_deletes_the_orphan_of_an_interrupted_creation(env: Env) -> None:
    env.kube.status["creationStartedAt"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    orphan = env.gitlab.create_runner("project_type", project_ids=[7], maintenance_note=maintenance_note("", UID))
    env.delete()
    assert env.gitlab.runner(orphan.id) is None and env.reasons() == ["RunnerDeleted"]


def test_orphan_search_forbidden_during_deletion_warns(env: Env) -> None:
    env.use_token("glpat-both")
    env.kube.status["creationStartedAt"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    orphan = env.gitlab.create_runner("project_type", project_ids=[7], maintenance_note=maintenance_note("", UID))
    env.delete()
    assert env.reasons() == ["OrphanSearchForbidden"] and "it stays in GitLab if it exists" in env.events[0][2]
    assert env.gitlab.runner(orphan.id) is not None


def test_gitlab_failure_during_deletion_is_explained(env: Env) -> None:
    env.reconcile()
    env.use_token("glpat-unknown")
    del env.kube.secrets["builds-runner-token"]  # nothing to fall back on
    with pytest.raises(ReconcileError) as caught:
        env.delete()
    assert caught.value.reason == "AccessTokenInvalid"


def by_token(env: Env) -> int:
    return len([c for c in env.gitlab.calls if c.method == "DELETE" and c.path.endswith("/api/v4/runners")])


def test_a_token_without_manage_runner_creates_and_the_runner_deletes_itself(env: Env) -> None:
    """create_runner alone may create a runner but not delete it (403): its own token deletes it (issue #27)."""
    env.use_token("glpat-create-only")
    runner_id = env.reconcile().runner_id  # created, its token stored
    with pytest.raises(ReconcileError) as caught:
        env.reconcile()  # reading the runner back needs more than create_runner
    assert caught.value.reason == "AccessTokenForbidden"
    env.delete()
    assert env.gitlab.runner(runner_id) is None and by_token(env) == 1
    assert env.reasons()[-2:] == ["RunnerDeleteForbidden", "RunnerDeleted"]
    warning = env.events[-2]
    assert warning[0] == "Warning" and "manage_runner" in warning[2] and "its own token" in warning[2]
    assert env.events[-1][2] == f"Deleted runner {runner_id} in GitLab with its own token"


def test_a_revoked_access_token_falls_back_to_the_runners_own_token(env: Env) -> None:
    runner_id = env.reconcile().runner_id
    env.use_token("glpat-unknown")  # 401
    env.delete()
    assert env.gitlab.runner(runner_id) is None and by_token(env) == 1
    assert env.reasons()[-2:] == ["RunnerDeleteForbidden", "RunnerDeleted"] and "revoked" in env.events[-2][2]


def test_a_refused_access_token_without_the_runner_token_keeps_the_error(env: Env) -> None:
    env.reconcile()
    env.gitlab.faults.add(Fault(method="DELETE", path=r"/runners/\d+$", status=403))
    del env.kube.secrets["builds-runner-token"]
    with pytest.raises(ReconcileError) as caught:
        env.delete()
    assert caught.value.reason == "AccessTokenForbidden" and "RunnerDeleteForbidden" not in env.reasons()


def test_other_failures_of_the_delete_are_not_sent_to_the_runner_token(env: Env) -> None:
    runner_id = env.reconcile().runner_id
    env.gitlab.faults.add(Fault(method="DELETE", path=r"/runners/\d+$", status=503, count=1))
    with pytest.raises(ReconcileError) as caught:
        env.delete()
    assert caught.value.reason == "GitLabUnavailable" and by_token(env) == 0
    env.delete()
    assert env.gitlab.runner(runner_id) is None


def test_ignores_a_token_secret_of_an_earlier_runner(env: Env) -> None:
    runner_id = env.reconcile().runner_id
    env.kube.secrets["builds-runner-token"]["owners"] = ["uid-of-an-earlier-runner"]
    env.kube.status.clear()
    env.delete()
    assert env.gitlab.runner(runner_id) is not None and env.reasons() == ["RunnerCreated"]


def test_the_runners_own_token_needs_the_ca_too(env: Env) -> None:
    env.spec["gitlab"]["caSecretRef"] = {"name": "gitlab-ca"}
    env.kube.put_secret("gitlab-ca", {"ca.crt": CA_PEM})
    runner_id = env.reconcile().runner_id
    del env.kube.secrets["gitlab-api"]
    del env.kube.secrets["gitlab-ca"]
    with pytest.raises(ReconcileError) as caught:
        env.delete()
    assert caught.value.reason == "CASecretMissing"  # never sent to GitLab unverified
    assert env.gitlab.runner(runner_id) is not None
