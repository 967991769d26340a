"""Every entry of the bad-input corpus (tests/data/bad_inputs.py) met by the use cases directly, as an object
stored before the schema had a rule would be: each ends in a classified ReconcileError with a reason and a message
(never another exception), reaches GitLab only when it has to, never writes endlessly, and can always be
deleted."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from glrt_operator.core.errors import ReconcileError
from glrt_operator.runners.context import RunnerRef
from tests.data.bad_inputs import CLOSED_NAMESPACE, CORPUS, BadInput, seed
from tests.harness.impostor import Impostor

from .conftest import NAMESPACE, UID, Env

VALID_TOKEN = "glpat-api"


@pytest.fixture(scope="module")
def impostor() -> Iterator[Impostor]:
    with Impostor().running() as server:
        yield server


def arrange(env: Env, bad: BadInput, impostor: Impostor) -> None:
    seed(env.gitlab)
    env.spec = bad.spec(env.spec)
    if bad.name is not None:
        env.ref = RunnerRef(NAMESPACE, bad.name, UID)
    if bad.access_token is not None:
        env.use_token(bad.access_token.format(token=VALID_TOKEN))
    if bad.ca is not None:
        env.spec["gitlab"]["caSecretRef"] = {"name": "gitlab-ca"}
        env.kube.put_secret("gitlab-ca", {"ca.crt": bad.ca})
    if bad.url == "closed-port":
        env.spec["gitlab"]["url"] = "http://127.0.0.1:9"
    elif bad.url == "fake-subpath":
        env.spec["gitlab"]["url"] = env.gitlab.url + "/not-gitlab"
    elif bad.url is not None:
        env.spec["gitlab"]["url"] = impostor.url(bad.url.split(":", 1)[1])
    if bad.setup == "foreign-statefulset":
        env.kube.sts_owners[env.ref.children.statefulset] = []
    elif bad.setup == "foreign-token-secret":
        env.kube.put_secret(env.ref.children.token_secret, {"token": "someone else's"}, owners=[])
    elif bad.setup == "closed-namespace":
        env.kube.namespaces[CLOSED_NAMESPACE] = {}


def gitlab_writes(env: Env) -> list[str]:
    """Calls that change GitLab (the token probe, a DELETE of a manager no runner has, changes nothing)."""
    return [
        f"{c.method} {c.path}" for c in env.gitlab.calls if c.method in ("POST", "PUT", "DELETE") and c.status != 404
    ]


def assert_no_secret(text: str) -> None:
    assert VALID_TOKEN not in text, hashlib.sha256(text.encode()).hexdigest()[:12]


@pytest.mark.parametrize("bad", [b for b in CORPUS if b.expect == "condition"], ids=lambda b: b.id)
def test_conditioned_with_reason_and_message_and_deletable(env: Env, impostor: Impostor, bad: BadInput) -> None:
    arrange(env, bad, impostor)
    with pytest.raises(ReconcileError) as caught:
        env.reconcile()
    error = caught.value
    assert error.reason in bad.reasons, error.message
    if bad.kind == "executor":  # this tier's operator serves every namespace: the namespace's own answer
        assert error.reason == bad.reasons[0], error.message
    assert len(error.message) > 20 and "Traceback" not in error.message
    assert_no_secret(error.message)
    # Bounded: one attempt makes a handful of GitLab calls at most (no walk, no loop).
    assert len(env.gitlab.calls) <= 3 and sum(impostor.requests.values()) <= 3 * len(CORPUS)
    assert env.gitlab.runners == {}  # nothing was created
    if bad.setup != "foreign-token-secret":  # and nothing that is not a token was stored as one
        assert env.ref.children.token_secret not in env.kube.secrets
    # A POST answered with anything but GitLab's success (garbage, a page, a redirect) may have been processed
    # behind a proxy: it stays fenced. A refused creation leaves no fence behind.
    if not error.transient and error.reason not in ("GitLabAnswerInvalid", "NotGitLab"):
        assert "creationStartedAt" not in env.kube.status
    # Deletion finishes: at once when nothing can exist, else once the caller gives up on a search that may pass.
    try:
        env.delete()
    except ReconcileError as exc:
        assert exc.transient, exc.message
        env.delete(give_up_search=True)


@pytest.mark.parametrize("bad", [b for b in CORPUS if b.expect == "apply"], ids=lambda b: b.id)
def test_refused_at_apply_is_refused_or_normalised_by_the_operator_too(
    env: Env, impostor: Impostor, bad: BadInput
) -> None:
    arrange(env, bad, impostor)
    (expected,) = bad.reasons
    if expected in ("InvalidSpec", "InvalidName"):
        with pytest.raises(ReconcileError) as caught:
            env.reconcile()
        assert caught.value.reason == expected and caught.value.permanent, caught.value.message
        assert env.gitlab.calls == []  # refused before anything reaches GitLab
        env.delete()  # and deletable
        return
    try:
        outcome = env.reconcile()
    except ReconcileError:
        return  # schema-only input that got through fails classified: enough
    env.kube.status.update(outcome.status_patch())  # as the handler writes it
    assert expected in ("accepted", "schema-only")
    writes = len(gitlab_writes(env))
    env.reconcile()
    assert len(gitlab_writes(env)) == writes, "a second reconcile of an unchanged spec wrote to GitLab"
    env.delete()


def test_the_corpus_is_big_and_distinct() -> None:
    assert len(CORPUS) >= 60 and len({b.id for b in CORPUS}) == len(CORPUS)
    assert {b.kind for b in CORPUS} >= {"name", "tags", "spec", "token", "ca", "url", "gitlab", "conflict", "executor"}
