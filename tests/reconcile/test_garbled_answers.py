"""Answers GitLab committed but that cannot be read as its success (issue #27): a proxy's page after the runner was
made, an empty body, a 303, a token that is null, empty, a number or of no token's shape. To a call that is not
idempotent (create runner, reset its token, create a deploy token) such an answer leaves the outcome unknown: the
fence stays, the next attempt adopts or resets instead of creating again, and no token that is not one is stored.
A 4xx still proves nothing was done."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from glrt_operator.core.errors import ReconcileError
from tests.fake_gitlab import Fault
from tests.fake_gitlab.faults import GARBLES

from .conftest import Env
from .test_deploy_tokens import DT, dt  # noqa: F401  (the DeployToken fixture)

CREATE = r"/user/runners$"
RESET = r"/reset_authentication_token$"
# What each garbled answer is classified as: not GitLab's JSON at all, or GitLab's JSON without a usable token.
REASONS = {"html": "NotGitLab", "empty": "NotGitLab", "text": "NotGitLab", "see-other": "NotGitLab"}


def garble(env_gitlab: object, path: str, how: str) -> Fault:
    fault = Fault(method="POST", path=path, kind="garble_after_commit", garble=how, count=1)
    return env_gitlab.faults.add(fault)  # type: ignore[attr-defined, no-any-return]


def in_gitlab(env: Env) -> list[int]:
    return sorted(env.gitlab.runners)


@pytest.mark.parametrize("how", GARBLES)
def test_a_garbled_create_answer_is_adopted_not_created_again(env: Env, how: str) -> None:
    garble(env.gitlab, CREATE, how)
    with pytest.raises(ReconcileError) as caught:
        env.reconcile()
    assert caught.value.reason == REASONS.get(how, "GitLabAnswerInvalid")
    assert "creationStartedAt" in env.kube.status and "runnerId" not in env.kube.status  # the fence stays
    assert "builds-runner-token" not in env.kube.secrets  # nothing that is not a token was stored
    assert "None" not in str(env.kube.secrets)
    (made,) = in_gitlab(env)

    outcome = env.reconcile()
    assert outcome.runner_id == made and env.posts() == 1 and in_gitlab(env) == [made]
    assert env.resets() == 1 and env.reasons() == ["RunnerAdopted"]  # its token was never seen: reset
    assert env.runner_token() == env.gitlab.runner(made).token and env.runner_token().startswith("glrt-")
    assert "creationStartedAt" not in env.kube.status

    env.delete()
    assert in_gitlab(env) == []


def test_a_refused_create_still_leaves_no_fence(env: Env) -> None:
    env.gitlab.faults.add(Fault(method="POST", path=CREATE, kind="status", status=422, count=1))
    with pytest.raises(ReconcileError):
        env.reconcile()
    assert "creationStartedAt" not in env.kube.status and in_gitlab(env) == []


def test_a_garbled_adoption_reset_keeps_the_fence_and_adopts_on_the_next_attempt(env: Env) -> None:
    env.gitlab.faults.add(Fault(method="POST", path=CREATE, kind="drop_after_commit", count=1))
    with pytest.raises(ReconcileError):
        env.reconcile()
    garble(env.gitlab, RESET, "token-null")
    with pytest.raises(ReconcileError) as caught:
        env.reconcile()  # found the orphan; its reset answered no token
    assert caught.value.reason == "GitLabAnswerInvalid" and "creationStartedAt" in env.kube.status
    assert "builds-runner-token" not in env.kube.secrets
    outcome = env.reconcile()
    assert env.posts() == 1 and env.resets() == 2 and in_gitlab(env) == [outcome.runner_id]
    assert env.runner_token() == env.gitlab.runner(outcome.runner_id).token


@pytest.mark.parametrize("how", ["html", "token-null", "token-shape", "see-other"])
def test_a_garbled_rotation_answer_keeps_the_fence_and_resets_again(env: Env, how: str) -> None:
    runner_id = env.reconcile().runner_id
    old = env.runner_token()
    env.spec["tokenRotation"] = {"requestedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    garble(env.gitlab, RESET, how)
    with pytest.raises(ReconcileError):
        env.reconcile()
    assert "rotationStartedAt" in env.kube.status  # GitLab revoked the old token: the next call resets again
    assert env.runner_token() == old and env.gitlab.runner(runner_id).token != old
    env.reconcile()
    assert env.resets() == 2 and "rotationStartedAt" not in env.kube.status
    assert env.runner_token() == env.gitlab.runner(runner_id).token


def test_a_garbled_restore_answer_stores_nothing_and_restores_on_the_next_attempt(env: Env) -> None:
    runner_id = env.reconcile().runner_id
    del env.kube.secrets["builds-runner-token"]
    garble(env.gitlab, RESET, "token-empty")
    with pytest.raises(ReconcileError):
        env.reconcile()
    assert "builds-runner-token" not in env.kube.secrets
    env.reconcile()
    assert env.runner_token() == env.gitlab.runner(runner_id).token and env.resets() == 2


def test_an_instance_token_prefix_is_a_usable_token(env: Env) -> None:
    """GitLab may put an instance prefix in front of `glrt-` (Instance token prefix): still a runner token."""
    from glrt_operator.core.gitlab import UnusableAnswer, usable_token

    assert usable_token("acme-glrt-t3_abcdef0123", "glrt-") == "acme-glrt-t3_abcdef0123"
    for bad in (None, "", 7, True, {"t": 1}, "glrt-", "glpat-abcdef0123", "glrt-abc def", "None"):
        with pytest.raises(UnusableAnswer) as caught:
            usable_token(bad, "glrt-")
        assert "abcdef" not in str(caught.value)  # never quotes the value


@pytest.mark.parametrize("how", ["html", "empty", "token-null", "token-shape", "no-token", "see-other"])
def test_a_garbled_deploy_token_answer_keeps_the_fence_and_revokes_the_stray(dt: DT, how: str) -> None:  # noqa: F811
    garble(dt.gitlab, r"/deploy_tokens$", how)
    with pytest.raises(ReconcileError):
        dt.reconcile()
    assert "creationStartedAt" in dt.status and len(dt.active()) == 1  # made, its value unreadable
    assert dt.spec["secret"]["name"] not in dt.kube.secrets
    outcome = dt.reconcile()
    assert dt.active() == [outcome.token_id] and dt.posts() == 2 and dt.registry_accepts()
    assert "StrayTokenRevoked" in dt.reasons() and "creationStartedAt" not in dt.status


def test_a_garbled_deploy_token_answer_is_revoked_on_deletion(dt: DT) -> None:  # noqa: F811
    garble(dt.gitlab, r"/deploy_tokens$", "token-null")
    with pytest.raises(ReconcileError):
        dt.reconcile()
    dt.delete()
    assert dt.active() == []
