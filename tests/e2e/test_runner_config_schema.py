"""The generated spec.config schema on a real API server: kubectl apply refuses typos, wrong types and
operator-owned keys with the key's path (strict field validation, kubectl's default), and accepts the kitchen sink.

The CRD under test is crds/runners.glrt.dev.yaml with spec.config replaced by runner_config's schema, under its own
group so that it does not disturb the installed Runner CRD.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from glrt_operator.runner_config.schema import with_config_schema
from tests.harness.controlplane import ControlPlane
from tests.harness.waiting import wait_for
from tests.unit.test_runner_config import KITCHEN_SINK, REFUSALS

GROUP = "configcheck.glrt.dev"
CRD = Path(__file__).resolve().parents[2] / "crds" / "runners.glrt.dev.yaml"


@pytest.fixture(scope="module")
def config_crd(control_plane: ControlPlane) -> ControlPlane:
    crd = with_config_schema(yaml.safe_load(CRD.read_text()))
    crd["metadata"]["name"] = f"runners.{GROUP}"
    crd["spec"]["group"] = GROUP
    crd["spec"]["names"].pop("shortNames", None)
    control_plane.kubectl("apply", "--server-side", "--field-manager=glrt-tests", "-f", "-", input=json.dumps(crd))
    # Poll instead of `kubectl wait`: the new resource reaches discovery a little after the CRD is Established.
    wait_for(
        lambda: (
            control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=_runner({}), check=False).returncode
            == 0
        ),
        timeout=90,
        interval=1,
        message="the test CRD to serve Runners",
    )
    return control_plane


def _runner(config: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "Runner",
            "metadata": {"name": "check", "namespace": "default"},
            "spec": {
                "gitlab": {"url": "https://gitlab.example.com", "credentialsSecretRef": {"name": "gl"}},
                "runnerType": "instance_type",
                "config": copy.deepcopy(config),
            },
        }
    )


def test_kitchen_sink_is_accepted(config_crd: ControlPlane) -> None:
    result = config_crd.kubectl("apply", "--dry-run=server", "-f", "-", input=_runner(KITCHEN_SINK), check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("config", "message"), REFUSALS, ids=[m[:40] for _, m in REFUSALS])
def test_kubectl_apply_refuses_with_the_path(config_crd: ControlPlane, config: dict[str, Any], message: str) -> None:
    result = config_crd.kubectl("apply", "--dry-run=server", "-f", "-", input=_runner(config), check=False)
    assert result.returncode != 0

    # The unit validator words its messages as the API server does, so the same text must appear, path included.
    if message.startswith("unknown field"):
        assert message in result.stderr, result.stderr
    elif " is set by the operator" in message or " is a credential" in message:
        assert message in result.stderr and "spec.config" in result.stderr, result.stderr
    else:
        assert message.split(": ", maxsplit=1)[0] in result.stderr, result.stderr
