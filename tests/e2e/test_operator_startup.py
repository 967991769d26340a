"""The operator process at startup: it refuses to idle without its CRD, and refuses bad settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from glrt_operator.core.api import API_VERSION
from tests.harness.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.cluster
def test_exits_with_a_clear_message_when_the_crd_is_missing(tmp_path: Path) -> None:
    with ControlPlane(tmp_path / "cp") as bare:  # no CRD installed here
        result = subprocess.run(
            [sys.executable, "-m", "glrt_operator", "run", "--namespace", "default"],
            # No metrics endpoint: a fixed port could be taken by another test run on this machine.
            env={**os.environ, "KUBECONFIG": str(bare.kubeconfig), "GLRT_METRICS_PORT": "0"},
            cwd=REPO,
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert f"{API_VERSION} is not served: install the CRD" in result.stderr


def test_bad_settings_fail_before_connecting_anywhere() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "glrt_operator", "run", "--all-namespaces"],
        env={**os.environ, "GLRT_RESYNC_INTERVAL": "soon", "KUBECONFIG": "/nonexistent"},
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "GLRT_RESYNC_INTERVAL='soon': expected a number of seconds" in result.stderr


def test_namespace_or_all_namespaces_is_required() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "glrt_operator", "run"],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "--namespace" in result.stderr
