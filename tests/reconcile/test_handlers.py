"""The Kopf handlers' glue, called as Kopf calls them: status and conditions written through the patch, failures
as a Ready=False condition, one Event per distinct problem, and Kopf's retry semantics."""

from __future__ import annotations

import asyncio
import inspect
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
import pytest

from glrt_operator.controller.runtime import CONFIG
from glrt_operator.core.api import API_VERSION
from glrt_operator.runners import handlers

from .conftest import NAMESPACE, Env


@pytest.fixture
def posted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Events the handlers post (Kopf's poster needs a running operator)."""
    events: list[tuple[str, str]] = []

    def event(body: Any, *, type: str, reason: str, message: str) -> None:
        events.append((type, reason))

    monkeypatch.setattr(kopf, "event", event)
    return events


def call(handler: Any, env: Env, *, generation: int = 1, retry: int = 0, **extra: Any) -> kopf.Patch:
    body = kopf.Body(
        {
            "apiVersion": API_VERSION,
            "kind": "Runner",
            "metadata": {"name": env.ref.name, "namespace": NAMESPACE, "uid": env.ref.uid, "generation": generation},
            "spec": env.spec,
            "status": dict(env.kube.status),
        }
    )
    patch = kopf.Patch()
    memo = env.__dict__.setdefault(
        "memo", kopf.Memo(kube=env.kube, gitlab=env.pool, resync_pool=ThreadPoolExecutor(1, thread_name_prefix="test"))
    )
    kwargs = {"retry": retry} if handler not in (handlers.resync_runner, handlers.on_runner_resumed) else {}
    try:
        result = handler(
            body=body,
            spec=body["spec"],
            status=body["status"],
            patch=patch,
            memo=memo,
            logger=logging.getLogger("test"),
            **kwargs,
            **extra,
        )
        if inspect.iscoroutine(result):  # the resync timer is async: it hands the work to the resync pool
            asyncio.run(result)
    finally:
        env.kube.status.update(patch.get("status", {}))  # Kopf applies the patch after success or failure
    return patch


def test_created_writes_status_and_ready(env: Env, posted: list[tuple[str, str]]) -> None:
    patch = call(handlers.on_runner_created_or_changed, env, generation=3)
    status = patch["status"]
    assert status["observedGeneration"] == 3 and status["runnerId"] == env.kube.status["runnerId"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "Reconciled" and "0/1 pod(s) ready" in ready["message"]
    token_valid = next(c for c in status["conditions"] if c["type"] == "TokenValid")
    assert token_valid["reason"] == "Accepted"
    assert posted == [("Normal", "RunnerCreated")]


def test_an_edit_reads_the_children_from_the_caches_a_creation_from_the_api_server(
    env: Env, posted: list[tuple[str, str]]
) -> None:
    call(handlers.on_runner_created_or_changed, env, reason="create")
    assert env.kube.event_views and not any(env.kube.event_views)
    env.kube.event_views.clear()
    env.spec["tags"] = ["edited"]
    call(handlers.on_runner_created_or_changed, env, generation=2, reason="update")
    assert env.kube.event_views == [True]  # one view for the whole call


def test_a_new_runner_is_marked_reconciling_at_once_an_edit_by_its_lagging_observed_generation(
    env: Env, posted: list[tuple[str, str]]
) -> None:
    call(handlers.on_runner_created_or_changed, env, reason="create")
    first = env.kube.status_writes[0]
    reconciling = next(c for c in first["conditions"] if c["type"] == "Reconciling")
    assert reconciling["status"] == "True" and first["observedGeneration"] == 1  # before anything else
    env.kube.status_writes.clear()
    env.spec["tags"] = ["edited"]
    patch = call(handlers.on_runner_created_or_changed, env, generation=2, reason="update")
    # Until the reconcile's own status, the stored observedGeneration (1) says generation 2 is in progress.
    assert env.kube.status_writes == [] and patch["status"]["observedGeneration"] == 2
    env.kube.status.pop("observedGeneration")  # a status without it (written by an older version): marked again
    env.spec["tags"] = ["edited", "again"]
    call(handlers.on_runner_created_or_changed, env, generation=3, reason="update")
    assert env.kube.status_writes[0]["observedGeneration"] == 3


def test_failure_sets_ready_false_once_and_retries_with_backoff(env: Env, posted: list[tuple[str, str]]) -> None:
    del env.kube.secrets["gitlab-api"]
    with pytest.raises(kopf.TemporaryError) as caught:
        call(handlers.on_runner_created_or_changed, env, retry=2)
    assert caught.value.delay == CONFIG.backoff(2)
    ready = env.kube.status["conditions"][0]
    assert ready["type"] == "Ready" and ready["status"] == "False" and ready["reason"] == "CredentialsMissing"
    with pytest.raises(kopf.TemporaryError):
        call(handlers.on_runner_created_or_changed, env, retry=3)
    assert posted == [("Warning", "CredentialsMissing")]  # the same problem again: no second Event


def test_invalid_spec_is_a_permanent_error(env: Env, posted: list[tuple[str, str]]) -> None:
    env.spec["runnerType"] = "nonsense"
    with pytest.raises(kopf.PermanentError):
        call(handlers.on_runner_created_or_changed, env)
    assert posted == [("Warning", "InvalidSpec")]


def test_resync_skips_a_generation_the_event_handlers_still_own(env: Env, posted: list[tuple[str, str]]) -> None:
    call(handlers.on_runner_created_or_changed, env, generation=1)
    calls = len(env.gitlab.calls)
    assert call(handlers.resync_runner, env, generation=2) == {}
    assert len(env.gitlab.calls) == calls
    patch = call(handlers.resync_runner, env, generation=1)
    assert len(env.gitlab.calls) > calls  # this one ran: it read GitLab
    assert patch["status"]["gitlabReads"] == "GraphQL" and env.kube.status["observedGeneration"] == 1
    assert call(handlers.resync_runner, env, generation=1) == {}  # the next one has nothing to write


def test_resync_failure_is_reported_not_raised(env: Env, posted: list[tuple[str, str]]) -> None:
    call(handlers.on_runner_created_or_changed, env)
    del env.kube.secrets["gitlab-api"]
    patch = call(handlers.resync_runner, env)
    assert patch["status"]["conditions"][-1]["reason"] == "CredentialsMissing"
    assert posted[-1] == ("Warning", "CredentialsMissing")


def test_deleted_unregisters(env: Env, posted: list[tuple[str, str]]) -> None:
    runner_id = call(handlers.on_runner_created_or_changed, env)["status"]["runnerId"]
    call(handlers.on_runner_deleted, env)
    assert env.gitlab.runner(runner_id) is None and posted[-1] == ("Normal", "RunnerDeleted")
