"""Runs entries of the bad-input corpus (tests/data/bad_inputs.py) against a real apiserver and the operator: the
e2e slice and `make chaos` share it. Each Runner gets its own GitLab user and access token (when the entry keeps a
valid one), so the fake GitLab's call log tells which bad Runner made which call."""

from __future__ import annotations

import copy
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from tests.data.bad_inputs import CLOSED_NAMESPACE, BadInput, seed
from tests.fake_gitlab import FakeGitLab
from tests.harness.impostor import Impostor

PROJECT_ID, GROUP_ID = 7, 3


@dataclass
class Outcome:
    bad: BadInput
    name: str
    refused_at_apply: str | None = None  # the apiserver's message
    created: bool = False
    reason: str | None = None
    message: str | None = None
    deleted: bool = False
    user: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        if self.bad.expect == "apply":
            return self.refused_at_apply is not None
        return self.reason in self.bad.reasons and bool(self.message)


def runner_name(bad: BadInput) -> str:
    return bad.name or f"bad-{bad.id}"[:52].rstrip("-")


def prepare(bad: BadInput, runners: Any, gitlab: FakeGitLab, impostor: Impostor) -> tuple[dict[str, Any], str | None]:
    """The Runner manifest for `bad` and what it needs besides (Secrets, foreign objects). Returns the body and
    the GitLab username whose token it uses (None when its calls cannot be told apart)."""
    seed(gitlab)
    name = runner_name(bad)
    body = runners.manifest(name)
    body["spec"] = bad.spec(body["spec"])
    gitlab_spec = body["spec"]["gitlab"]
    user_name: str | None = None
    if "credentialsSecretRef" not in bad.patch.get("gitlab", {}):
        user_name = f"u-{bad.id}"[:40]
        if user_name not in {u.username for u in gitlab._state.users.values()}:
            user = gitlab.add_user(user_name)
            gitlab.add_project_member(PROJECT_ID, user, "maintainer")
            gitlab.add_access_token(_token_for(bad), user, scopes=["create_runner", "manage_runner", "read_api"])
        value = _token_for(bad) if bad.access_token is None else bad.access_token.format(token=_token_for(bad))
        if bad.access_token is not None and "{token}" not in bad.access_token:
            user_name = None  # a token of nobody's (or the shared read-only one)
        runners.put_secret(f"api-{name}"[:253], {"token": value})
        gitlab_spec["credentialsSecretRef"] = {"name": f"api-{name}"[:253]}
    if bad.ca is not None:
        runners.put_secret(f"ca-{name}", {"ca.crt": bad.ca})
        gitlab_spec["caSecretRef"] = {"name": f"ca-{name}"}
    if bad.url == "closed-port":
        gitlab_spec["url"] = "http://127.0.0.1:9"
    elif bad.url == "fake-subpath":
        gitlab_spec["url"] = gitlab.url + "/not-gitlab"
    elif bad.url is not None:
        gitlab_spec["url"] = impostor.url(bad.url.split(":", 1)[1])
        user_name = None
    if bad.setup == "foreign-statefulset":
        _foreign_statefulset(runners, name)
    elif bad.setup == "foreign-token-secret":
        runners.put_secret(f"{name}-runner-token", {"token": "someone else's"})
    elif bad.setup == "closed-namespace":
        _closed_namespace(runners)
    return body, user_name


def _closed_namespace(runners: Any) -> None:
    """A namespace that accepts no other namespace's resources (no glrt.dev/accept-from); shared by every run."""
    try:
        runners.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=CLOSED_NAMESPACE)))
    except client.ApiException as exc:
        if exc.status != 409:
            raise


def _token_for(bad: BadInput) -> str:
    return f"glpat-corpus-{bad.id}-0123456789"


def _foreign_statefulset(runners: Any, name: str) -> None:
    labels = {"app": f"foreign-{name}"[:63]}
    sts = client.V1StatefulSet(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1StatefulSetSpec(
            replicas=0,
            selector=client.V1LabelSelector(match_labels=labels),
            service_name=name,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
            ),
        ),
    )
    runners.apps.create_namespaced_stateful_set(runners.namespace, sts)


def apply(bad: BadInput, body: dict[str, Any], runners: Any, outcome: Outcome) -> None:
    try:
        runners.create(copy.deepcopy(body))
        outcome.created = True
    except client.ApiException as exc:
        if exc.status not in (400, 422):
            raise
        outcome.refused_at_apply = _apiserver_message(exc)


def _apiserver_message(exc: client.ApiException) -> str:
    import json

    try:
        return str(json.loads(exc.body or "{}").get("message", ""))[:300]
    except ValueError:
        return str(exc.reason)


def wait_conditions(outcomes: list[Outcome], runners: Any, timeout: float) -> None:
    """Until every created Runner shows a Ready=False condition with one of its expected reasons (or timeout)."""
    deadline = time.monotonic() + timeout
    pending = [o for o in outcomes if o.created]
    while pending and time.monotonic() < deadline:
        for o in list(pending):
            c = runners.condition(o.name)
            o.reason, o.message = c.get("reason"), c.get("message")
            if c.get("status") == "False" and o.reason in o.bad.reasons:
                pending.remove(o)
        time.sleep(0.5)


def delete_all(outcomes: list[Outcome], runners: Any, timeout: float) -> None:
    for o in outcomes:
        if o.created:
            runners.delete(o.name)
    deadline = time.monotonic() + timeout
    pending = [o for o in outcomes if o.created]
    while pending and time.monotonic() < deadline:
        for o in list(pending):
            if not runners.exists(o.name):
                o.deleted = True
                pending.remove(o)
        time.sleep(0.5)


def calls_by_user(gitlab: FakeGitLab, since: int = 0) -> Counter[str]:
    return Counter(c.user for c in gitlab.calls[since:] if c.user)
