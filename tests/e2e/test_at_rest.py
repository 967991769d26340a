"""No Kubernetes write at rest, counted by the real kube-apiserver: the Runner use case (in-process, with the real
Kubernetes adapter) applies its children once, and a reconcile that finds them as desired applies nothing
(`apiserver_request_total` for verb APPLY, server-side apply, does not move). Control plane only, no pods."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from glrt_operator.adapters.gitlab import GitLabPool
from glrt_operator.adapters.kube import Kube
from glrt_operator.core.api import RUNNER
from glrt_operator.core.ports import ChildObject
from glrt_operator.runners.context import RunnerRef
from glrt_operator.runners.reconcile import open_context, reconcile
from tests.e2e.conftest import Runners
from tests.harness.controlplane import ControlPlane
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster
LOG = logging.getLogger("tests.e2e.at_rest")


def applies(kube: client.ApiClient) -> dict[str, float]:
    """Server-side applies the apiserver has served so far, by resource."""
    return requests(kube, "APPLY")


def requests(kube: client.ApiClient, *verbs: str) -> dict[str, float]:
    """Requests of these verbs the apiserver has served so far, by resource."""
    headers: dict[str, str] = {}
    kube.update_params_for_auth(headers, [], ["BearerToken"], "GET", "/metrics", None)
    response = kube.call_api("GET", kube.configuration.host + "/metrics", header_params=headers)
    response.read()
    text = response.data.decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        verb = re.search(r'verb="([^"]*)"', line)
        if line.startswith("apiserver_request_total{") and verb and verb[1] in verbs:
            resource = re.search(r'resource="([^"]*)"', line)
            key = resource[1] if resource else "?"
            counts[key] = counts.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


class Counted:
    """The requests one ApiClient sends (watch streams apart): what the adapter under test asks of the apiserver,
    whatever the controllers and other tests' cleanups ask at the same time."""

    def __init__(self, api: client.ApiClient) -> None:
        self.sent: list[str] = []
        request = api.rest_client.request

        def counted(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            query = kwargs.get("query_params") or []
            if not any(k == "watch" and v for k, v in query) and "watch=" not in url:
                self.sent.append(f"{method} {url.split('?', maxsplit=1)[0]}")
            return request(method, url, *args, **kwargs)

        api.rest_client.request = counted  # type: ignore[method-assign]


@pytest.fixture
def pool() -> Iterator[GitLabPool]:
    gitlab = GitLabPool()
    yield gitlab
    gitlab.close()


@dataclass
class Watched:
    """A new Runner, and the Kubernetes adapter with its watch caches started, counting what it sends."""

    adapter: Kube
    sent: Counted
    body: dict[str, Any]
    ref: RunnerRef


@pytest.fixture
def watched(control_plane: ControlPlane, runners: Runners) -> Iterator[Watched]:
    body = runners.create(runners.manifest(replicas=1))
    own_api = control_plane.api_client()
    sent = Counted(own_api)
    adapter = Kube(own_api)
    adapter.start_caches([runners.namespace], server_timeout=60, own_secret_ttl=3600, secret_ttl=3600)
    try:
        yield Watched(adapter, sent, body, RunnerRef(runners.namespace, "builds", body["metadata"]["uid"]))
    finally:
        adapter.stop_caches()
        own_api.close()


def test_a_reconcile_at_rest_applies_nothing(kube: client.ApiClient, runners: Runners, pool: GitLabPool) -> None:
    body = runners.create(runners.manifest(replicas=1))
    ref = RunnerRef(runners.namespace, "builds", body["metadata"]["uid"])
    adapter = Kube(kube)

    def run() -> None:
        events: list[str] = []
        ctx = open_context(adapter, pool, ref, body["spec"], lambda t, r, m: events.append(r), LOG)
        reconcile(ctx)

    before = applies(kube)
    run()  # creates: the token and config Secrets, the StatefulSet, its ServiceAccount and PodDisruptionBudget
    created = applies(kube)
    for resource in ("secrets", "statefulsets", "serviceaccounts", "poddisruptionbudgets"):
        assert created.get(resource, 0) > before.get(resource, 0), resource
    run()
    run()
    assert applies(kube) == created
    # A child changed behind the operator's back is applied again.
    apps = client.AppsV1Api(kube)
    sts = apps.read_namespaced_stateful_set("builds", runners.namespace)
    annotations = dict(sts.metadata.annotations or {})
    annotations["glrt.dev/desired-hash"] = "edited"
    apps.patch_namespaced_stateful_set("builds", runners.namespace, {"metadata": {"annotations": annotations}})
    run()
    again = applies(kube)
    assert again.get("statefulsets", 0) == created.get("statefulsets", 0) + 1
    assert {k: v for k, v in again.items() if k != "statefulsets"} == {
        k: v for k, v in created.items() if k != "statefulsets"
    }


def test_a_resync_at_rest_reads_nothing_from_the_api_server(
    watched: Watched, kube: client.ApiClient, runners: Runners, pool: GitLabPool
) -> None:
    """A resync's view (`Kube.for_resync`) reads the children from the watch caches, the Secrets from what was last
    read or written and the status from the (Kopf) body: no GET or LIST reaches the apiserver, and nothing is
    written; a StatefulSet changed behind the operator's back is still seen (through its watch) and applied."""
    adapter, sent, body, ref = watched.adapter, watched.sent, watched.body, watched.ref

    def run(view: Kube) -> None:
        ctx = open_context(view, pool, ref, body["spec"], lambda t, r, m: None, LOG)
        reconcile(ctx)

    run(adapter)  # an event: creates the children, reading the apiserver
    assert adapter.wait_caches(30)
    apps = client.AppsV1Api(kube)
    wait_for(
        lambda: adapter.for_resync(runners.get()).read_child("StatefulSet", runners.namespace, "builds") is not None,
        timeout=10,
        message="the StatefulSet in the watch cache",
    )
    # The StatefulSet controller creates the pod after the first reconcile; at rest begins once it is seen.
    wait_for(
        lambda: adapter.for_resync(runners.get()).list_pods(runners.namespace, "glrt.dev/runner=builds"),
        timeout=10,
        message="the manager pod in the watch cache",
    )
    run(adapter.for_resync(runners.get()))
    live = runners.get()
    before = len(sent.sent)
    run(adapter.for_resync(live))
    run(adapter.for_resync(live))
    assert sent.sent[before:] == []
    sts = apps.read_namespaced_stateful_set("builds", runners.namespace)
    annotations = dict(sts.metadata.annotations or {})
    annotations["glrt.dev/desired-hash"] = "edited"
    apps.patch_namespaced_stateful_set("builds", runners.namespace, {"metadata": {"annotations": annotations}})
    wait_for(
        lambda: (
            (
                adapter.for_resync(live).read_child("StatefulSet", runners.namespace, "builds") or ChildObject()
            ).annotations.get("glrt.dev/desired-hash")
            == "edited"
        ),
        timeout=10,
        message="the edit in the watch cache",
    )
    applied = applies(kube).get("statefulsets", 0)
    run(adapter.for_resync(live))
    assert applies(kube).get("statefulsets", 0) == applied + 1


def test_creating_a_runner_reads_each_object_once(
    control_plane: ControlPlane, kube: client.ApiClient, runners: Runners, pool: GitLabPool
) -> None:
    """An event's view (`Kube.for_event`) reads the API server, but each object once: the checks before GitLab is
    touched and the applies after look at the same children, and a second GET of one not written since is waste
    (at creation every one of them is a 404). The status the runtime patched first (Reconciling) is not read back."""
    body = runners.create(runners.manifest(replicas=1))
    ref = RunnerRef(runners.namespace, "builds", body["metadata"]["uid"])
    own_api = control_plane.api_client()
    sent = Counted(own_api)
    try:
        view = Kube(own_api).for_event()
        view.patch_status(RUNNER, runners.namespace, "builds", {"observedGeneration": 0})
        ctx = open_context(view, pool, ref, body["spec"], lambda t, r, m: None, LOG)
        assert ctx.status.observed_generation == 0  # what the patch returned
        reconcile(ctx)
    finally:
        own_api.close()
    gets = [request for request in sent.sent if request.startswith("GET ")]
    twice = {request: n for request in gets if (n := gets.count(request)) > 1}
    assert twice == {}
    assert not [g for g in gets if g.endswith("/runners/builds/status")], gets
    children = ("secrets/builds-runner-token", "secrets/builds-runner-config", "statefulsets/builds")
    assert all(any(g.endswith(child) or f"{child}/" in g for g in gets) for child in children), gets


def test_a_resync_view_sees_someone_elses_object_of_a_childs_name(
    control_plane: ControlPlane, kube: client.ApiClient, runners: Runners
) -> None:
    """The watches select on the operator's label, so a user's ServiceAccount named like the Runner's is not in
    them; a resync must still see it (applying over it would adopt it): a cache miss is read from the apiserver."""
    core = client.CoreV1Api(kube)
    core.create_namespaced_service_account(runners.namespace, {"metadata": {"name": "builds-runner"}})
    body = runners.create(runners.manifest(replicas=1))
    adapter = Kube(control_plane.api_client())
    adapter.start_caches([runners.namespace], server_timeout=60, own_secret_ttl=3600, secret_ttl=3600)
    try:
        assert adapter.wait_caches(30)
        view = adapter.for_resync(body)
        found = view.read_child("ServiceAccount", runners.namespace, "builds-runner")
        assert found is not None and found.owners == ()
        assert view.read_child("ServiceAccount", runners.namespace, "nobody-runner") is None
    finally:
        adapter.stop_caches()


def test_an_edits_view_reads_the_children_from_the_caches_and_the_rest_from_the_api_server(
    watched: Watched, runners: Runners, pool: GitLabPool
) -> None:
    """An edit (`Kube.for_event(cached_children=True)`) finds the children it created in the watch caches, as a
    resync does; its Secrets and the status are read from the apiserver (an edit may follow a change made anywhere).
    A creation's view reads every child: at creation the caches cannot tell a missing child from a user's."""
    adapter, sent, body, ref = watched.adapter, watched.sent, watched.body, watched.ref
    children = ("/statefulsets/", "/serviceaccounts/", "/poddisruptionbudgets/", "/rolebindings/", "/pods")

    def gets(view: Kube, spec: dict[str, Any]) -> list[str]:
        before = len(sent.sent)
        reconcile(open_context(view, pool, ref, spec, lambda t, r, m: None, LOG))
        return [request for request in sent.sent[before:] if request.startswith("GET ")]

    assert adapter.wait_caches(30)
    created = gets(adapter.for_event(cached_children=True), body["spec"])  # nothing in the caches yet: read
    assert [g for g in created if "/statefulsets/" in g], created
    wait_for(
        lambda: adapter.for_resync(runners.get()).list_pods(runners.namespace, "glrt.dev/runner=builds"),
        timeout=10,
        message="the manager pod in the watch cache",
    )
    edited = gets(adapter.for_event(cached_children=True), {**body["spec"], "tags": ["edited"]})
    assert [g for g in edited if "/secrets/" in g] and [g for g in edited if g.endswith("/status")], edited
    assert [g for g in edited if any(kind in g for kind in children)] == []
    again = gets(adapter.for_event(), {**body["spec"], "tags": ["edited"]})  # not an edit: every child read
    assert [g for g in again if "/serviceaccounts/" in g], again
