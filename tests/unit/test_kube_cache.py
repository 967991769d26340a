"""The watch caches' bookkeeping (`adapters.kube_cache`), without an API server: what a cache answers before and
after its list, label selection, and how long a remembered Secret is trusted."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from glrt_operator.adapters import kube_cache
from glrt_operator.adapters.kube_cache import Entry, Informer, SecretMemory, selector_labels
from glrt_operator.core.ports import PodInfo, SecretObject


def informer_with(*items: tuple[str, str, dict[str, str]]) -> Informer:
    informer = Informer("Pod", lambda *a, **k: None, kube_cache.pod_of, None, 60)
    informer._items = {(ns, name): Entry(labels, PodInfo(name, False, {})) for ns, name, labels in items}
    return informer


def test_an_informer_answers_only_once_it_has_listed() -> None:
    informer = informer_with(("ci", "builds-0", {"glrt.dev/runner": "builds"}))
    assert informer.get("ci", "builds-0") == (False, None)
    assert informer.select("ci", {"glrt.dev/runner": "builds"}) == (False, [])
    informer.synced.set()
    known, pod = informer.get("ci", "builds-0")
    assert known and pod.name == "builds-0"
    assert informer.get("ci", "gone") == (True, None)  # listed and absent: it does not exist


def test_an_informer_selects_by_namespace_and_every_label() -> None:
    informer = informer_with(
        ("ci", "builds-0", {"glrt.dev/runner": "builds"}),
        ("ci", "deploy-0", {"glrt.dev/runner": "deploy"}),
        ("other", "builds-0", {"glrt.dev/runner": "builds"}),
    )
    informer.synced.set()
    known, pods = informer.select("ci", {"glrt.dev/runner": "builds"})
    assert known and [p.name for p in pods] == ["builds-0"]


@pytest.mark.parametrize(
    ("selector", "labels"),
    [
        ("glrt.dev/runner=builds", {"glrt.dev/runner": "builds"}),
        ("a=b,c=d", {"a": "b", "c": "d"}),
        ("a!=b", None),
        ("a==b", None),
        ("a in (b)", None),
        ("a", None),
    ],
)
def test_only_equality_selectors_are_answered_from_a_cache(selector: str, labels: dict[str, str] | None) -> None:
    assert selector_labels(selector) == labels


def test_own_secrets_are_trusted_longer_than_others(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(kube_cache.time, "monotonic", lambda: now[0])
    memory = SecretMemory(own_ttl=3600, other_ttl=60)
    own = SecretObject("builds-runner-config", owners=("uid-1",))
    memory.remember("ci", "builds-runner-config", own)
    memory.remember("ci", "gitlab-api", SecretObject("gitlab-api"))
    memory.remember("ci", "missing", None)
    assert memory.recall("ci", "unknown") == (False, None)
    now[0] += 61
    assert memory.recall("ci", "builds-runner-config") == (True, own)
    assert not memory.recall("ci", "gitlab-api")[0]
    assert not memory.recall("ci", "missing")[0]
    now[0] += 3600
    assert not memory.recall("ci", "builds-runner-config")[0]
    memory.remember("ci", "builds-runner-config", own)
    memory.forget("ci", "builds-runner-config")
    assert memory.recall("ci", "builds-runner-config") == (False, None)


def test_a_statefulset_is_kept_as_what_the_operator_compares() -> None:
    obj = {
        "metadata": {"annotations": {"glrt.dev/desired-hash": "x"}, "ownerReferences": [{"uid": "u"}]},
        "status": {"readyReplicas": 2},
    }
    child = kube_cache.child_of("StatefulSet")(obj)
    assert (dict(child.annotations), child.owners, child.ready_replicas) == ({"glrt.dev/desired-hash": "x"}, ("u",), 2)
    assert kube_cache.child_of("ServiceAccount")(obj).ready_replicas == 0
    pod = kube_cache.pod_of({"metadata": {"name": "builds-0", "deletionTimestamp": "2026-01-01T00:00:00Z"}})
    assert (pod.name, pod.terminating, dict(pod.annotations)) == ("builds-0", True, {})


def test_an_informer_lists_page_by_page_then_follows_the_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    pages = [
        {"metadata": {"continue": "next"}, "items": [{"metadata": {"namespace": "ci", "name": "a", "labels": {}}}]},
        {"metadata": {"resourceVersion": "7"}, "items": [{"metadata": {"namespace": "ci", "name": "b"}}]},
    ]
    calls: list[dict[str, Any]] = []

    def lister(*args: Any, **options: Any) -> Any:
        calls.append(options)
        return SimpleNamespace(data=json.dumps(pages[len(calls) - 1]).encode())

    informer = Informer("Pod", lister, kube_cache.pod_of, "ci", 60)
    assert informer._list() == "7"
    assert calls[0]["label_selector"] == "glrt.dev/runner" and calls[1]["_continue"] == "next"
    informer.synced.set()
    assert [informer.get("ci", n)[1].name for n in ("a", "b")] == ["a", "b"]
