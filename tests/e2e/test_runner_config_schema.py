"""The generated spec.config schema of the Runner CRD on a real API server: kubectl apply refuses typos, wrong
types, operator-owned keys and plain-text credentials with the key's path (strict field validation, kubectl's
default), and accepts the kitchen sink. And the CRD, big as it is, installs both ways users install it: plain
(client-side) `kubectl apply`, and `helm install` from the chart's crds/.

The refusals run against the installed glrt.dev CRD (crds/runners.glrt.dev.yaml, server-side dry run). The install
checks use copies of the same file under their own groups, so that they can create and delete it freely.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from glrt_operator.core.api import VERSION
from tests.harness.controlplane import ControlPlane
from tests.harness.waiting import wait_for
from tests.unit.test_runner_config import KITCHEN_SINK, REFUSALS

pytestmark = [pytest.mark.cluster, pytest.mark.oldest_kubernetes]

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "runners.glrt.dev.yaml"
CHART = ROOT / "helm" / "glrt-operator"
ANNOTATION_LIMIT = 256 * 1024  # the API server's limit on a object's annotations, which client-side apply fills


@pytest.fixture(scope="module")
def runners_served(control_plane: ControlPlane, crd_installed: list[str]) -> ControlPlane:
    # Poll: the resource reaches discovery a little after the CRD is Established.
    wait_for(
        lambda: (
            control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=_runner({}), check=False).returncode
            == 0
        ),
        timeout=90,
        interval=1,
        message="the Runner CRD to serve Runners",
    )
    return control_plane


def _runner(config: dict[str, Any], group: str = "glrt.dev") -> str:
    return json.dumps(
        {
            "apiVersion": f"{group}/{VERSION}",
            "kind": "Runner",
            "metadata": {"name": "check", "namespace": "default"},
            "spec": {
                "gitlab": {"url": "https://gitlab.example.com", "credentialsSecretRef": {"name": "gl"}},
                "runnerType": "instance_type",
                "config": copy.deepcopy(config),
            },
        }
    )


def test_kitchen_sink_is_accepted(runners_served: ControlPlane) -> None:
    result = runners_served.kubectl("apply", "--dry-run=server", "-f", "-", input=_runner(KITCHEN_SINK), check=False)
    assert result.returncode == 0, result.stderr


def test_deploy_token_pull_secrets_for_job_pods_are_accepted(runners_served: ControlPlane) -> None:
    config = {"kubernetes": {"imagePullSecrets": ["registry-pull"]}}
    result = runners_served.kubectl("apply", "--dry-run=server", "-f", "-", input=_runner(config), check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("config", "message"), REFUSALS, ids=[m[:40] for _, m in REFUSALS])
def test_kubectl_apply_refuses_with_the_path(
    runners_served: ControlPlane, config: dict[str, Any], message: str
) -> None:
    result = runners_served.kubectl("apply", "--dry-run=server", "-f", "-", input=_runner(config), check=False)
    assert result.returncode != 0

    # The operator's validator words its messages as the API server does, so the same text must appear, path included.
    if message.startswith("unknown field"):
        assert message in result.stderr, result.stderr
    elif " is set by the operator" in message or " is a credential" in message:
        assert message in result.stderr and "spec.config" in result.stderr, result.stderr
    else:
        assert message.split(": ", maxsplit=1)[0] in result.stderr, result.stderr


def _renamed(group: str) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(CRD.read_text())
    crd["metadata"]["name"] = f"runners.{group}"
    crd["spec"]["group"] = group
    crd["spec"]["names"].pop("shortNames", None)
    return crd


@pytest.fixture
def scratch_group(control_plane: ControlPlane) -> Iterator[str]:
    group = f"check{secrets.token_hex(3)}.glrt.dev"
    yield group
    control_plane.kubectl("delete", "crd", f"runners.{group}", "--ignore-not-found", check=False)


def _serves(control_plane: ControlPlane, group: str) -> None:
    # Poll rather than `kubectl wait`: right after the create, the CRD has no status.conditions yet.
    wait_for(
        lambda: (
            control_plane.kubectl(
                "apply", "--dry-run=server", "-f", "-", input=_runner(KITCHEN_SINK, group), check=False
            ).returncode
            == 0
        ),
        timeout=90,
        interval=1,
        message=f"runners.{group} to serve Runners",
    )


def test_crd_installs_with_client_side_kubectl_apply(control_plane: ControlPlane, scratch_group: str) -> None:
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(_renamed(scratch_group)))
    _serves(control_plane, scratch_group)
    stored = json.loads(control_plane.kubectl("get", "crd", f"runners.{scratch_group}", "-o", "json").stdout)
    last_applied = stored["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    assert len(last_applied.encode()) < ANNOTATION_LIMIT - 16 * 1024, "too close to the annotation limit"
    # A second apply (an upgrade) goes through the three-way merge with that annotation.
    again = control_plane.kubectl("apply", "-f", "-", input=json.dumps(_renamed(scratch_group)))
    assert "unchanged" in again.stdout or "configured" in again.stdout


def test_crd_installs_with_helm(control_plane: ControlPlane, scratch_group: str, tmp_path: Path) -> None:
    chart = tmp_path / "crd-only"
    (chart / "crds").mkdir(parents=True)
    (chart / "templates").mkdir()
    (chart / "Chart.yaml").write_text(yaml.safe_dump({"apiVersion": "v2", "name": "crd-only", "version": "0.1.0"}))
    (chart / "crds" / "runners.yaml").write_text(yaml.safe_dump(_renamed(scratch_group), sort_keys=False))
    release = f"crd-{scratch_group.split('.', maxsplit=1)[0]}"
    control_plane.helm("install", release, str(chart), "--namespace", "default")
    try:
        _serves(control_plane, scratch_group)
    finally:
        control_plane.helm("uninstall", release, "--namespace", "default", check=False)
