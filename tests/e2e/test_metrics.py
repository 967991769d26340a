"""The operator's Prometheus endpoint, scraped from the real process: after a create, a rotation, a GitLab 503
burst, a 429 and a delete, every counter and gauge holds the exact value the fake GitLab's call log and the Runner's
status say it must, and no token is anywhere in the exposition.

The resync timer is set to an hour so that only the steps of the test call GitLab: the counts are then exact."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from glrt_operator.metrics import STATIC_SEGMENTS
from tests.e2e.conftest import PAT, Runners, assert_no_secrets, issued_secrets
from tests.fake_gitlab import FakeGitLab, Fault
from tests.harness.controlplane import ControlPlane
from tests.harness.operator import OperatorProcess
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster

THIRTY_DAYS = 30 * 24 * 3600
Labels = tuple[tuple[str, str], ...]


@pytest.fixture
def operator(
    control_plane: ControlPlane, namespace: str, gitlab: FakeGitLab, runners: Runners, tmp_path: Path
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        control_plane.kubeconfig,
        namespace,
        tmp_path,
        # The metrics of REST reads are what this counts (batch reads: tests/reconcile/test_batch_reads.py).
        env={"GLRT_RESYNC_INTERVAL": "3600", "GLRT_BATCH_READS": "false"},
    ).start()
    try:
        yield process
    finally:
        process.stop()
        assert_no_secrets(process.output(), runners, gitlab)


class Scrape:
    """One scrape, parsed: samples by name and label set."""

    def __init__(self, text: str):
        self.text = text
        self.samples: dict[str, dict[Labels, float]] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                self.samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value

    def get(self, metric: str, /, **labels: str) -> float | None:
        return self.samples.get(metric, {}).get(tuple(sorted(labels.items())))

    def series(self, metric: str, /, **match: str) -> dict[Labels, float]:
        return {k: v for k, v in self.samples.get(metric, {}).items() if match.items() <= dict(k).items()}


def scrape(operator: OperatorProcess, gitlab: FakeGitLab) -> Scrape:
    text = operator.scrape()
    leaked = [s[:9] + "..." for s in issued_secrets(gitlab) | {PAT} if s in text]
    assert not leaked, f"{len(leaked)} secret(s) in the metrics output (prefixes only: {leaked})"
    return Scrape(text)


def template(path: str) -> str:
    """The template of a call in the fake GitLab's log (the same vocabulary as the operator's)."""
    path = path.removeprefix("/api/v4")
    return "/".join(s if s in STATIC_SEGMENTS or not s else ":id" for s in path.split("/"))


def calls_by_template(gitlab: FakeGitLab) -> dict[tuple[str, str, str], float]:
    counted = Counter((template(c.path), c.method, f"{c.status // 100}xx") for c in gitlab.calls)
    return {k: float(v) for k, v in counted.items()}


def requests_counted(s: Scrape) -> dict[tuple[str, str, str], float]:
    return {
        (d["endpoint"], d["method"], d["status_class"]): v
        for k, v in s.series("glrt_gitlab_api_requests_total").items()
        if (d := dict(k))
    }


def assert_calls_match(operator: OperatorProcess, gitlab: FakeGitLab) -> Scrape:
    """Every call the fake GitLab answered is counted once, under its template, method and status class."""
    expected = calls_by_template(gitlab)
    last: list[Scrape] = []

    def matches() -> bool:
        last[:] = [scrape(operator, gitlab)]
        return requests_counted(last[0]) == expected

    try:
        wait_for(matches, timeout=10, message="GitLab calls counted")
    except TimeoutError:
        assert requests_counted(last[0]) == expected  # shows the difference
    return last[0]


def timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def printed_columns(control_plane: ControlPlane, namespace: str, name: str = "builds") -> dict[str, str]:
    """`kubectl get runner NAME`, as a user sees it (the apiserver renders the printer columns)."""
    out = control_plane.kubectl("get", "runners.glrt.dev", name, "-n", namespace).stdout
    header, row = out.strip().splitlines()
    names = re.split(r"\s{2,}", header.strip())
    return dict(zip(names, re.split(r"\s{2,}", row.strip()), strict=True))


def test_metrics_follow_create_rotation_503_burst_429_and_delete(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess, control_plane: ControlPlane
) -> None:
    ns, key = runners.namespace, {"namespace": runners.namespace, "name": "builds"}
    gitlab.settings.project_runner_token_expiration_interval = THIRTY_DAYS

    # Before anything: the reconcile counters exist at 0, no Runner series.
    s = scrape(operator, gitlab)
    assert s.get("controller_runtime_reconcile_total", controller="runner", result="success") == 0
    assert s.get("controller_runtime_reconcile_errors_total", controller="runner") == 0
    assert not s.series("glrt_runner_ready_status", namespace=ns)

    # --- create -------------------------------------------------------------------------------------------
    runners.create(runners.manifest())
    status = runners.wait_ready()["status"]
    s = assert_calls_match(operator, gitlab)
    assert s.get("controller_runtime_reconcile_total", controller="runner", result="success") == 1
    assert s.get("controller_runtime_reconcile_total", controller="runner", result="error") == 0
    assert s.get("controller_runtime_reconcile_time_seconds_count", controller="runner") == 1
    assert status["tokenExpiresAt"] and status["renewalTime"]
    assert s.get("glrt_runner_token_expiration_timestamp_seconds", **key) == timestamp(status["tokenExpiresAt"])
    assert s.get("glrt_runner_token_renewal_timestamp_seconds", **key) == timestamp(status["renewalTime"])
    # renewBefore (72h) ahead of expiry, moved earlier by at most 10% of it (the per-Runner jitter).
    ahead = timestamp(status["tokenExpiresAt"]) - timestamp(status["renewalTime"])
    assert 72 * 3600 <= ahead <= 72 * 3600 * 1.1
    assert {c: s.get("glrt_runner_ready_status", **key, condition=c) for c in ("True", "False", "Unknown")} == {
        "True": 1,
        "False": 0,
        "Unknown": 0,
    }
    # No kubelet runs here: both replicas exist only as StatefulSet ordinals, GitLab has no manager for them.
    assert s.get("glrt_runner_managers", **key, status="not_registered") == 2
    assert s.get("glrt_runner_managers", **key, status="online") == 0
    assert not s.series("glrt_runner_token_rotations_total", **key)
    # The columns show the future times as they are (a `date` column would print "<invalid>").
    row = printed_columns(control_plane, ns)
    assert row["TOKEN EXPIRES"] == status["tokenExpiresAt"] and row["RENEWAL"] == status["renewalTime"]

    # --- rotation on request --------------------------------------------------------------------------------
    runners.patch_spec(tokenRotation={"requestedAt": "2026-11-23T10:00:00Z"})
    wait_for(
        lambda: runners.get()["status"].get("rotationRequestedAt") == "2026-11-23T10:00:00Z",
        timeout=30,
        message="rotation recorded",
    )
    status = runners.wait_ready()["status"]
    s = assert_calls_match(operator, gitlab)
    assert s.get("glrt_runner_token_rotations_total", **key, reason="requested") == 1
    assert len(s.series("glrt_runner_token_rotations_total", **key)) == 1  # no other reason
    assert s.get("controller_runtime_reconcile_total", controller="runner", result="success") == 2
    assert s.get("glrt_runner_token_expiration_timestamp_seconds", **key) == timestamp(status["tokenExpiresAt"])
    assert s.get("glrt_runner_token_renewal_timestamp_seconds", **key) == timestamp(status["renewalTime"])
    assert s.get("glrt_gitlab_api_requests_total", endpoint="/runners/:id/reset_authentication_token",
                 method="POST", status_class="2xx") == 1  # fmt: skip

    # --- a burst of three 503s on the runner read --------------------------------------------------------------
    burst = gitlab.faults.add(Fault(method="GET", path=r"^/api/v4/runners/\d+$", kind="status", status=503, count=3))
    runners.patch_spec(description="builds for team B")
    wait_for(lambda: burst.hits == 3, timeout=30, message="three 503 answers")
    status = runners.wait_ready(timeout=60)["status"]
    s = assert_calls_match(operator, gitlab)
    assert s.get("glrt_gitlab_api_requests_total", endpoint="/runners/:id", method="GET", status_class="5xx") == 3
    assert s.get("glrt_gitlab_api_retries_total", endpoint="/runners/:id", reason="server_error") == 3
    assert s.get("controller_runtime_reconcile_errors_total", controller="runner") == 3
    assert s.get("controller_runtime_reconcile_total", controller="runner", result="error") == 3
    assert s.get("controller_runtime_reconcile_total", controller="runner", result="success") == 3
    assert s.get("controller_runtime_reconcile_time_seconds_count", controller="runner") == 6
    assert s.get("glrt_runner_ready_status", **key, condition="True") == 1  # Ready again after the burst
    assert s.get("glrt_gitlab_api_rate_limit_waits_total", source="gitlab") == 0  # 503 is no rate limit
    assert not s.series("glrt_gitlab_api_access_denied_total")

    # --- one 429 with Retry-After: 2 on the manager list --------------------------------------------------------
    limited = gitlab.faults.add(
        Fault(method="GET", path=r"^/api/v4/runners/\d+/managers$", kind="rate_limit_app", retry_after=2, count=1)
    )
    runners.patch_spec(description="builds for team C")
    wait_for(lambda: limited.hits == 1, timeout=30, message="one 429 answer")
    runners.wait_ready(timeout=60)
    s = assert_calls_match(operator, gitlab)
    assert s.get("glrt_gitlab_api_rate_limit_waits_total", source="gitlab") == 1
    assert s.get("glrt_gitlab_api_rate_limit_wait_seconds_total", source="gitlab") == 2
    assert s.get("glrt_gitlab_api_retries_total", endpoint="/runners/:id/managers", reason="rate_limited") == 1
    assert s.get("controller_runtime_reconcile_errors_total", controller="runner") == 4
    assert s.get("controller_runtime_reconcile_total", controller="runner", result="success") == 4

    # --- delete ----------------------------------------------------------------------------------------------
    runner_id = status["runnerId"]
    runners.delete()
    wait_for(lambda: not runners.exists(), timeout=30, message="Runner gone")
    assert runner_id not in gitlab.runner_ids()
    s = assert_calls_match(operator, gitlab)
    assert s.get("glrt_gitlab_api_requests_total", endpoint="/runners/:id", method="DELETE", status_class="2xx") == 1
    assert s.get("controller_runtime_reconcile_total", controller="runner", result="success") == 5
    for family, samples in s.samples.items():
        left = [dict(k) for k in samples if dict(k).get("namespace") == ns]
        assert not left, f"{family} still has series of the deleted Runner: {left}"
