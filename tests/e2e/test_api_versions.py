"""CRD versions on a real API server (control plane only): an object written through the deprecated v1alpha1 is
served as v1beta1, every request to v1alpha1 gets the deprecation warning naming v1beta1, `kubectl get` prints the
same columns through both, and the storage migration moves the objects of the previous release (v1alpha1 stored)
to v1beta1 and drops v1alpha1 from status.storedVersions.

The CRD is a copy of crds/runners.glrt.dev.yaml under its own group, so the previous release's CRD can be
installed and upgraded freely next to the real one.
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

from glrt_operator.adapters.kube_storage import migrate_storage
from glrt_operator.core.api import DEPRECATED_VERSIONS, VERSION, deprecation_warning
from tests.harness.controlplane import ControlPlane
from tests.harness.waiting import wait_for
from tests.unit.test_crd_versions import PRINTER_COLUMNS

pytestmark = [pytest.mark.cluster, pytest.mark.oldest_kubernetes]

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "runners.glrt.dev.yaml"
OLD = DEPRECATED_VERSIONS[0]


def _renamed(group: str) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(CRD.read_text())
    crd["metadata"]["name"] = f"runners.{group}"
    crd["spec"]["group"] = group
    crd["spec"]["names"].pop("shortNames", None)
    return crd


def _previous_release(group: str) -> dict[str, Any]:
    """The CRD as the previous release shipped it: v1alpha1 alone, served and stored."""
    crd = _renamed(group)
    storage = copy.deepcopy(crd["spec"]["versions"][0])
    storage["name"] = OLD
    crd["spec"]["versions"] = [storage]
    return crd


def _runner(group: str, version: str, name: str) -> str:
    return json.dumps(
        {
            "apiVersion": f"{group}/{version}",
            "kind": "Runner",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "gitlab": {"url": "https://gitlab.example.com", "credentialsSecretRef": {"name": "gl"}},
                "runnerType": "instance_type",
                "tags": ["docker"],
            },
        }
    )


@pytest.fixture
def group(control_plane: ControlPlane) -> Iterator[str]:
    group = f"versions{secrets.token_hex(3)}.glrt.dev"
    yield group
    control_plane.kubectl("delete", "crd", f"runners.{group}", "--ignore-not-found", "--wait=false", check=False)


def _apply_crd(control_plane: ControlPlane, crd: dict[str, Any], version: str) -> None:
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(crd))
    _wait_served(control_plane, crd["spec"]["group"], version)


def _wait_served(control_plane: ControlPlane, group: str, version: str) -> None:
    probe = _runner(group, version, "probe")
    wait_for(
        lambda: control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=probe, check=False).returncode == 0,
        timeout=90,
        interval=1,
        message=f"runners.{group} to serve {version}",
    )


def _stored_versions(control_plane: ControlPlane, group: str) -> list[str]:
    crd = json.loads(control_plane.kubectl("get", "crd", f"runners.{group}", "-o", "json").stdout)
    return list(crd["status"]["storedVersions"])


def _get(control_plane: ControlPlane, group: str, version: str, name: str) -> dict[str, Any]:
    got = control_plane.kubectl("get", f"runners.{version}.{group}", name, "-n", "default", "-o", "json")
    return dict(json.loads(got.stdout))


def _columns(control_plane: ControlPlane, resource: str) -> list[str]:
    header = control_plane.kubectl("get", resource, "-n", "default").stdout.splitlines()[0]
    # Two or more spaces separate the columns; names like "Runner ID" hold one.
    return [c.strip() for c in header.split("  ") if c.strip()]


def test_upgrade_from_v1alpha1_storage(control_plane: ControlPlane, group: str) -> None:
    _apply_crd(control_plane, _previous_release(group), OLD)
    for name in ("builds", "deploys"):
        control_plane.kubectl("apply", "-f", "-", input=_runner(group, OLD, name))
    before = {name: _get(control_plane, group, OLD, name) for name in ("builds", "deploys")}

    # The new CRD: v1beta1 stored, v1alpha1 still served. Objects already in etcd stay v1alpha1 until rewritten.
    _apply_crd(control_plane, _renamed(group), VERSION)
    assert _stored_versions(control_plane, group) == [OLD, VERSION]

    # Served as v1beta1, unchanged.
    served = _get(control_plane, group, VERSION, "builds")
    assert served["apiVersion"] == f"{group}/{VERSION}"
    assert served["spec"] == before["builds"]["spec"]

    # Every request to v1alpha1 is answered with the warning naming the replacement; v1beta1 with none.
    warning = deprecation_warning(OLD, "Runner")
    old_get = control_plane.kubectl("get", f"runners.{OLD}.{group}", "builds", "-n", "default", "-o", "name")
    assert f"Warning: {warning}" in old_get.stderr, old_get.stderr
    created = control_plane.kubectl("apply", "-f", "-", input=_runner(group, OLD, "late"))
    assert f"Warning: {warning}" in created.stderr, created.stderr
    new_get = control_plane.kubectl("get", f"runners.{VERSION}.{group}", "builds", "-n", "default", "-o", "name")
    assert "Warning" not in new_get.stderr, new_get.stderr

    # `kubectl get runners` prints the same columns as before, through either version.
    expected = ["NAME", *(c.upper() for c in PRINTER_COLUMNS["Runner"] if c != "Reason")]  # Reason: priority 1
    assert _columns(control_plane, f"runners.{VERSION}.{group}") == expected
    assert _columns(control_plane, f"runners.{OLD}.{group}") == expected

    # The migration: every object rewritten (a new resourceVersion, nothing else changed), v1alpha1 dropped.
    api = control_plane.api_client()
    try:
        result = migrate_storage(api, group=group, plural="runners", version=VERSION)
        assert result.done and result.rewritten == 3 and result.stored_before == (OLD, VERSION)
        assert _stored_versions(control_plane, group) == [VERSION]
        for name, old in before.items():
            now = _get(control_plane, group, VERSION, name)
            assert now["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"]
            assert now["metadata"]["generation"] == old["metadata"]["generation"]
            assert now["spec"] == old["spec"]
        # Done once: a second run (the next operator start) writes nothing.
        again = migrate_storage(api, group=group, plural="runners", version=VERSION)
        assert again.done and again.rewritten == 0
    finally:
        api.close()

    # v1alpha1 is still served after the migration (a later release may stop: docs/operations/api-versions.md).
    assert "builds" in control_plane.kubectl("get", f"runners.{OLD}.{group}", "-n", "default", "-o", "name").stdout
