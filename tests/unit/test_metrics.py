"""The metrics module on its own: names, labels, values, removal, the GitLab call hook (through the real adapter
over httpx.MockTransport) and the HTTP endpoint. The registry is process-wide, so tests use their own object
names or compare before/after."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from glrt_operator import metrics
from glrt_operator.adapters.gitlab import GitLabError, GitLabPool
from glrt_operator.settings import ConfigError, OperatorConfig

PAT = "glpat-metrics-unit-secret"
RUNNER_TOKEN = "glrt-t3_metrics-unit-secret"


def value(metric: str, /, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(metric, labels)


def delta(metric: str, labels: dict[str, str], action: Callable[[], object]) -> float:
    before = value(metric, **labels) or 0.0
    action()
    return (value(metric, **labels) or 0.0) - before


def client(handler: Callable[[httpx.Request], httpx.Response]):  # type: ignore[no-untyped-def]
    return GitLabPool(transport=httpx.MockTransport(handler)).client("https://gitlab.test/api/v4", PAT)


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/runners/42", "/runners/:id"),
        ("/runners/42/managers", "/runners/:id/managers"),
        ("/runners/42/reset_authentication_token", "/runners/:id/reset_authentication_token"),
        ("/user/runners", "/user/runners"),
        ("/runners/all?per_page=100", "/runners/all"),
        ("/projects/group%2Fbuilds/deploy_tokens/5", "/projects/:id/deploy_tokens/:id"),
        ("/runners/glrt-t3_abc", "/runners/:id"),  # whatever a segment holds, it never reaches a label
        ("/runners", "/runners"),
    ],
)
def test_endpoint_templates_keep_only_known_words(path: str, template: str) -> None:
    assert metrics.endpoint_template(path) == template


def test_adapter_calls_are_counted_by_template_method_and_status_class() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/managers"):
            return httpx.Response(503, json={"message": "down"})
        return httpx.Response(200, json={"id": 77})

    gl = client(handler)
    ok = {"endpoint": "/runners/:id", "method": "GET", "status_class": "2xx"}
    assert delta("glrt_gitlab_api_requests_total", ok, lambda: gl.get_runner(77)) == 1
    failed = {"endpoint": "/runners/:id/managers", "method": "GET", "status_class": "5xx"}
    retries = {"endpoint": "/runners/:id/managers", "reason": "server_error"}
    before = value("glrt_gitlab_api_retries_total", **retries) or 0.0
    failed_before = value("glrt_gitlab_api_requests_total", **failed) or 0.0
    with pytest.raises(GitLabError):
        gl.list_managers(77)
    assert value("glrt_gitlab_api_requests_total", **failed) == failed_before + 1
    assert value("glrt_gitlab_api_retries_total", **retries) == before + 1
    count = value("glrt_gitlab_api_request_duration_seconds_count", endpoint="/runners/:id", method="GET")
    assert count is not None and count >= 1


def test_network_errors_count_as_status_class_network_and_a_retry() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    gl = client(handler)
    labels = {"endpoint": "/runners/:id", "method": "DELETE", "status_class": "network"}
    before = value("glrt_gitlab_api_requests_total", **labels) or 0.0
    with pytest.raises(GitLabError):
        gl.delete_runner(5)
    assert value("glrt_gitlab_api_requests_total", **labels) == before + 1
    assert (value("glrt_gitlab_api_retries_total", endpoint="/runners/:id", reason="network") or 0) >= 1


def test_429_counts_a_rate_limit_wait_of_retry_after_seconds() -> None:
    gl = client(lambda r: httpx.Response(429, headers={"Retry-After": "17"}, text="Retry later\n"))
    waits = value("glrt_gitlab_api_rate_limit_waits_total", source="gitlab") or 0.0
    seconds = value("glrt_gitlab_api_rate_limit_wait_seconds_total", source="gitlab") or 0.0
    with pytest.raises(GitLabError):
        gl.get_runner(1)
    assert value("glrt_gitlab_api_rate_limit_waits_total", source="gitlab") == waits + 1
    assert value("glrt_gitlab_api_rate_limit_wait_seconds_total", source="gitlab") == seconds + 17
    metrics.record_rate_limit_wait("budget", 2.5)  # what a local request budget reports
    assert (value("glrt_gitlab_api_rate_limit_wait_seconds_total", source="budget") or 0) >= 2.5


def test_access_denied_counts_only_calls_made_with_the_access_token() -> None:
    gl = client(lambda r: httpx.Response(403, json={"message": "403 Forbidden"}))
    denied = {"endpoint": "/user/runners", "code": "403"}
    denied_before = value("glrt_gitlab_api_access_denied_total", **denied) or 0.0
    with pytest.raises(GitLabError):
        gl.create_runner({})
    assert value("glrt_gitlab_api_access_denied_total", **denied) == denied_before + 1
    # A runner token GitLab refuses (403) is an answer about that token, not about the access token.
    by_token = {"endpoint": "/runners/managers", "code": "403"}
    assert delta("glrt_gitlab_api_access_denied_total", by_token, lambda: gl.token_is_valid(RUNNER_TOKEN)) == 0


def test_reconciles_are_counted_by_result_and_timed() -> None:
    ok = {"controller": "deploytoken", "result": "success"}
    assert value("controller_runtime_reconcile_total", **ok) is not None  # present at 0 from the start

    def succeed() -> None:
        with metrics.observe_reconcile("deploytoken"):
            pass

    def fail() -> None:
        with pytest.raises(RuntimeError), metrics.observe_reconcile("deploytoken"):
            raise RuntimeError("boom")

    assert delta("controller_runtime_reconcile_total", ok, succeed) == 1
    error = {"controller": "deploytoken", "result": "error"}
    errors_before = value("controller_runtime_reconcile_errors_total", controller="deploytoken") or 0.0
    assert delta("controller_runtime_reconcile_total", error, fail) == 1
    assert value("controller_runtime_reconcile_errors_total", controller="deploytoken") == errors_before + 1
    assert (value("controller_runtime_reconcile_time_seconds_count", controller="deploytoken") or 0) >= 2


def test_runner_series_are_set_and_removed_on_delete() -> None:
    expires = datetime(2026, 12, 22, 10, 0, tzinfo=UTC)
    renews = datetime(2026, 12, 19, 3, 0, tzinfo=UTC)
    metrics.observe_runner(
        "ns-a", "builds", expires_at=expires, renewal_at=renews, manager_statuses=["online", None, "stale", "weird"]
    )
    key = {"namespace": "ns-a", "name": "builds"}
    assert value("glrt_runner_token_expiration_timestamp_seconds", **key) == expires.timestamp()
    assert value("glrt_runner_token_renewal_timestamp_seconds", **key) == renews.timestamp()
    assert value("glrt_runner_ready_status", **key, condition="True") == 1
    assert value("glrt_runner_ready_status", **key, condition="False") == 0
    managers = {s: value("glrt_runner_managers", **key, status=s) for s in metrics.MANAGER_STATUSES}
    # A missing or unknown status counts as offline rather than becoming a label value.
    assert managers == {"online": 1, "offline": 2, "stale": 1, "never_contacted": 0, "not_registered": 0}
    metrics.RUNNER.count_rotation("ns-a", "builds", "requested")
    assert value("glrt_runner_token_rotations_total", **key, reason="requested") == 1
    metrics.RUNNER.observe_ready("ns-a", "builds", "False")
    assert value("glrt_runner_ready_status", **key, condition="False") == 1

    metrics.observe_runner("ns-a", "other", expires_at=None, renewal_at=None, manager_statuses=[])
    metrics.RUNNER.forget("ns-a", "builds")
    exposition = metrics.REGISTRY.collect()
    names = [(s.name, s.labels) for family in exposition for s in family.samples]
    assert not [n for n, labels in names if labels.get("name") == "builds" and labels.get("namespace") == "ns-a"]
    assert value("glrt_runner_ready_status", namespace="ns-a", name="other", condition="True") == 1
    # A token that never expires has no expiration series at all (cert-manager does the same).
    assert value("glrt_runner_token_expiration_timestamp_seconds", namespace="ns-a", name="other") is None


def test_rotation_reasons_are_a_fixed_set() -> None:
    with pytest.raises(ValueError, match="unknown rotation reason"):
        metrics.RUNNER.count_rotation("ns", "n", "the token expires at 2026-01-01")


def test_deploy_token_gauges_for_the_deploytoken_controller() -> None:
    expires = datetime(2026, 12, 23, tzinfo=UTC)
    renews = datetime(2026, 12, 16, tzinfo=UTC)
    metrics.observe_deploy_token("ci", "registry-pull", expires_at=expires, renewal_at=renews, ready="True")
    key = {"namespace": "ci", "name": "registry-pull"}
    assert value("glrt_deploytoken_token_expiration_timestamp_seconds", **key) == expires.timestamp()
    assert value("glrt_deploytoken_token_renewal_timestamp_seconds", **key) == renews.timestamp()
    assert value("glrt_deploytoken_ready_status", **key, condition="True") == 1
    metrics.DEPLOY_TOKEN.count_rotation("ci", "registry-pull", "expiring")
    metrics.observe_deploy_token("ci", "registry-pull", expires_at=expires, renewal_at=None, ready="Bogus")
    assert value("glrt_deploytoken_token_renewal_timestamp_seconds", **key) is None
    assert value("glrt_deploytoken_ready_status", **key, condition="Unknown") == 1
    metrics.DEPLOY_TOKEN.forget("ci", "registry-pull")
    assert value("glrt_deploytoken_token_expiration_timestamp_seconds", **key) is None
    assert value("glrt_deploytoken_token_rotations_total", **key, reason="expiring") is None


def test_endpoint_serves_the_exposition_format() -> None:
    server = metrics.serve(0, "127.0.0.1")
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    families = {f.name for f in text_string_to_metric_families(text)}
    assert {
        "controller_runtime_reconcile",
        "controller_runtime_reconcile_errors",
        "controller_runtime_reconcile_time_seconds",
        "glrt_gitlab_api_requests",
        "glrt_gitlab_api_request_duration_seconds",
        "glrt_gitlab_api_rate_limit_waits",
        "process_resident_memory_bytes",
    } <= families
    assert PAT not in text and RUNNER_TOKEN not in text


def test_metrics_port_setting() -> None:
    assert OperatorConfig.from_env({}).metrics_port == 8081
    assert OperatorConfig.from_env({"GLRT_METRICS_PORT": "0"}).metrics_port == 0
    assert OperatorConfig.from_env({"GLRT_METRICS_PORT": "9100"}).metrics_port == 9100
    for bad in ("http", "-1", "70000"):
        with pytest.raises(ConfigError, match="GLRT_METRICS_PORT"):
            OperatorConfig.from_env({"GLRT_METRICS_PORT": bad})
