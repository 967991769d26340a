"""No Kubernetes write at rest, counted by the real kube-apiserver: the Runner use case (in-process, with the real
Kubernetes adapter) applies its children once, and a reconcile that finds them as desired applies nothing
(`apiserver_request_total` for verb APPLY, server-side apply, does not move). Control plane only, no pods."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest
from kubernetes import client

from glrt_operator.adapters.gitlab import GitLabPool
from glrt_operator.adapters.kube import Kube
from glrt_operator.runners.context import RunnerRef
from glrt_operator.runners.reconcile import open_context, reconcile
from tests.e2e.conftest import Runners

pytestmark = pytest.mark.cluster
LOG = logging.getLogger("tests.e2e.at_rest")


def applies(kube: client.ApiClient) -> dict[str, float]:
    """Server-side applies the apiserver has served so far, by resource."""
    headers: dict[str, str] = {}
    kube.update_params_for_auth(headers, [], ["BearerToken"], "GET", "/metrics", None)
    response = kube.call_api("GET", kube.configuration.host + "/metrics", header_params=headers)
    response.read()
    text = response.data.decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{") and 'verb="APPLY"' in line:
            resource = re.search(r'resource="([^"]*)"', line)
            key = resource[1] if resource else "?"
            counts[key] = counts.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


@pytest.fixture
def pool() -> Iterator[GitLabPool]:
    gitlab = GitLabPool()
    yield gitlab
    gitlab.close()


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
