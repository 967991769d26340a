"""The chart's monitoring objects, checked by real tools rather than by eye: the PrometheusRule's rules by
`promtool check rules` and `promtool test rules` (promtool built from the Prometheus Go module, see
scripts/fetch-binaries.sh), the Grafana dashboard by a JSON schema of Grafana's dashboard model and its queries by
promtool's PromQL parser, and every series name they use against the operator's own metrics registry.

Needs helm and promtool (cached binaries), no cluster."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from glrt_operator import metrics
from tests.e2e.test_helm_chart import CHART, SCHEMA_ERROR, helm, helm_home, kinds, render, the_container
from tests.harness import binaries

__all__ = ["helm_home"]  # the fixture, shared with test_helm_chart

HERE = Path(__file__).parent / "monitoring"
ALL_ON = [
    "--set",
    "metrics.serviceMonitor.enabled=true",
    "--set",
    "metrics.prometheusRule.enabled=true",
    "--set",
    "metrics.dashboard.enabled=true",
]
SERIES = re.compile(r"\b((?:glrt|controller_runtime|gitlab_runner)_[a-z_]+)\b")
# Label names (in `by (...)`, `without (...)` and selectors) are not series.
LABELS = re.compile(r"\b(?:by|without)\s*\([^)]*\)|\{[^}]*\}")


# gitlab-runner's metrics the dashboard shows (https://docs.gitlab.com/runner/monitoring/; commands/multi.go and
# helpers/prometheus/failures_collector.go in gitlab-runner's source).
GITLAB_RUNNER_SERIES = {"gitlab_runner_jobs", "gitlab_runner_concurrent", "gitlab_runner_failed_jobs_total"}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binaries.binary("promtool")), *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def exposed_series() -> set[str]:
    """Every sample name the operator can expose (counters with _total, histograms with _bucket/_sum/_count)."""
    names: set[str] = set()
    for family in metrics.REGISTRY.collect():
        names.add(family.name)
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(family.type, ())
        names.update(family.name + s for s in suffixes)
    return names


def rendered_groups(home: dict[str, str], *args: str) -> list[dict[str, Any]]:
    (rule,) = kinds(render(home, *ALL_ON, *args))["PrometheusRule"]
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def dashboard(home: dict[str, str]) -> dict[str, Any]:
    configmaps = kinds(render(home, *ALL_ON))["ConfigMap"]
    (board,) = [c for c in configmaps if c["metadata"]["name"].endswith("-dashboard")]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"  # the Grafana sidecar's default selector
    data: dict[str, Any] = json.loads(board["data"]["glrt-operator.json"])
    return data


def test_default_render_serves_metrics_and_nothing_that_needs_the_prometheus_operator(
    helm_home: dict[str, str],
) -> None:
    docs = kinds(render(helm_home))
    assert "ServiceMonitor" not in docs and "PrometheusRule" not in docs and "ConfigMap" not in docs
    container = the_container(render(helm_home))
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    assert {"name": "GLRT_METRICS_PORT", "value": "8081"} in container["env"]
    (service,) = docs["Service"]
    assert service["metadata"]["name"] == "glrt-glrt-operator-metrics"
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"}]
    (deployment,) = docs["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()

    off = render(helm_home, "--set", "metrics.enabled=false")
    assert "Service" not in kinds(off)
    container = the_container(off)
    assert [p["name"] for p in container["ports"]] == ["health"]
    assert {"name": "GLRT_METRICS_PORT", "value": "0"} in container["env"]


def test_without_metrics_nothing_that_needs_them_is_rendered(helm_home: dict[str, str]) -> None:
    """Alerts over series nobody serves could never fire, and a dashboard of them stays empty (issue #27)."""
    off = kinds(render(helm_home, *ALL_ON, "--set", "metrics.enabled=false"))
    assert not {"ServiceMonitor", "PrometheusRule", "ConfigMap", "Service"} & off.keys()
    notes = helm(
        helm_home, "install", "glrt", str(CHART), "--dry-run=client", *ALL_ON, "--set", "metrics.enabled=false"
    ).stdout
    assert "metrics.serviceMonitor, metrics.prometheusRule, metrics.dashboard" in notes  # NOTES say why
    on = kinds(render(helm_home, *ALL_ON))
    assert {"ServiceMonitor", "PrometheusRule", "ConfigMap", "Service"} <= on.keys()
    # The manager pods' own series (PodMonitor) still fill the dashboard's "Runner managers" row; no alert uses them.
    pods_only = ["--set", "metrics.enabled=false", "--set", "managerMetrics.podMonitor.enabled=true"]
    assert kinds(render(helm_home, *ALL_ON, *pods_only)).keys() & {"PrometheusRule", "ConfigMap", "PodMonitor"} == {
        "ConfigMap",
        "PodMonitor",
    }
    notes = helm(helm_home, "install", "glrt", str(CHART), "--dry-run=client", *ALL_ON, *pods_only).stdout
    assert "metrics.serviceMonitor, metrics.prometheusRule\n" in notes


def test_pod_monitor_scrapes_every_runners_manager_pods_with_its_name(helm_home: dict[str, str]) -> None:
    """gitlab-runner's own metrics: the PodMonitor selects the pods the operator labels (the StatefulSet builder's
    labels), on their named metrics port, and names each series' Runner."""
    from glrt_operator.runners.builders import METRICS_PORT, labels

    assert "PodMonitor" not in kinds(render(helm_home))
    (monitor,) = kinds(render(helm_home, "--set", "managerMetrics.podMonitor.enabled=true"))["PodMonitor"]
    spec = monitor["spec"]
    assert spec["selector"]["matchLabels"].items() <= labels("builds").items()
    assert spec["namespaceSelector"] == {"any": True}
    (endpoint,) = spec["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics" and METRICS_PORT == 9252
    assert {"sourceLabels": ["__meta_kubernetes_pod_label_glrt_dev_runner"], "targetLabel": "glrt_runner"} in endpoint[
        "relabelings"
    ]
    namespaced = render(
        helm_home, "--set", "managerMetrics.podMonitor.enabled=true", "--set-json", 'watch.namespaces=["ci"]'
    )
    (monitor,) = kinds(namespaced)["PodMonitor"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ci"]}


def test_service_monitor_selects_the_metrics_service_and_honours_the_runner_namespace(
    helm_home: dict[str, str],
) -> None:
    docs = kinds(render(helm_home, *ALL_ON, "--set", "metrics.serviceMonitor.labels.release=prom"))
    (monitor,) = docs["ServiceMonitor"]
    (service,) = docs["Service"]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["glrt-system"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] and endpoint["honorLabels"] is True


def test_promtool_checks_the_rules_and_their_unit_tests_pass(helm_home: dict[str, str], tmp_path: Path) -> None:
    groups = rendered_groups(helm_home)
    alerts = sorted({r["alert"] for g in groups for r in g["rules"]})
    assert alerts == [
        "GlrtConnectionTokenNotRenewable",
        "GlrtGitLabAccessDenied",
        "GlrtGitLabRateLimited",
        "GlrtRunnerManagersOffline",
        "GlrtRunnerNotReady",
        "GlrtTokenRenewalOverdue",
    ]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    shutil.copy(HERE / "rules_test.yaml", tmp_path / "rules_test.yaml")

    checked = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout

    tested = promtool("test", "rules", "rules_test.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout

    # The unit tests can fail: with a longer "for", the Runner is not yet alerting at 16 minutes.
    slower = rendered_groups(helm_home, "--set", "metrics.prometheusRule.runnerNotReadyFor=30m")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": slower}, sort_keys=False))
    failing = promtool("test", "rules", "rules_test.yaml", cwd=tmp_path)
    assert failing.returncode != 0 and "GlrtRunnerNotReady" in failing.stdout + failing.stderr


def test_rules_and_dashboard_use_only_series_the_operator_exposes(helm_home: dict[str, str]) -> None:
    exposed = exposed_series()
    expressions = [r["expr"] for g in rendered_groups(helm_home) for r in g["rules"]]
    expressions += [t["expr"] for p in dashboard(helm_home)["panels"] for t in p.get("targets", [])]
    used = {name for expr in expressions for name in SERIES.findall(LABELS.sub("", expr))}
    assert used, "no series found: the pattern is wrong"
    # gitlab-runner's own, scraped from the manager pods (the PodMonitor); the runner stand-in serves the same names
    # (tests/integration/test_runner_standin.py).
    runner = {name for name in used if name.startswith("gitlab_runner_")}
    assert runner <= GITLAB_RUNNER_SERIES, f"not gitlab-runner's: {sorted(runner - GITLAB_RUNNER_SERIES)}"
    assert used - runner <= exposed, f"unknown series: {sorted(used - runner - exposed)}"
    assert runner == GITLAB_RUNNER_SERIES  # running jobs, concurrency use and failures per Runner
    # Every per-Runner family is shown or alerted on somewhere.
    for family in (
        "glrt_runner_token_expiration_timestamp_seconds",
        "glrt_runner_managers",
        "glrt_runner_ready_status",
    ):
        assert family in used


def test_dashboard_matches_grafanas_model_and_its_queries_parse(helm_home: dict[str, str], tmp_path: Path) -> None:
    board = dashboard(helm_home)
    schema = json.loads((HERE / "grafana-dashboard.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(board)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in board["panels"]:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
    assert {v["name"] for v in board["templating"]["list"]} >= {"datasource"}
    # The schema check itself can fail: a panel without a grid position is refused.
    broken = json.loads(json.dumps(board))
    del broken["panels"][1]["gridPos"]
    with pytest.raises(jsonschema.ValidationError, match="gridPos"):
        jsonschema.Draft202012Validator(schema).validate(broken)

    # Grafana sends each expr to Prometheus as is: promtool parses them all (as recording rules).
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    rules = [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = promtool("check", "rules", "dashboard.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in checked.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "metrics.serviceMonitor.interval=30"], "at '/metrics/serviceMonitor/interval'"),
        (["--set", "metrics.prometheusRule.runnerNotReadyFor=soon"], "at '/metrics/prometheusRule/runnerNotReadyFor'"),
        (["--set", "containerPorts.metrics=0"], "at '/containerPorts/metrics'"),
        (["--set", "metrics.serviceMonitr.enabled=true"], "additional properties 'serviceMonitr' not allowed"),
    ],
    ids=["interval", "for", "port", "typo"],
)
def test_schema_refuses_bad_monitoring_values(helm_home: dict[str, str], args: list[str], message: str) -> None:
    result = helm(helm_home, "template", "glrt", str(CHART), *args, check=False)
    assert result.returncode != 0
    assert SCHEMA_ERROR in result.stderr and message in result.stderr, result.stderr
