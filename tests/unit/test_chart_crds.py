"""The chart ships the CRDs of crds/ byte for byte: its templates/crds.yaml renders helm/glrt-operator/files/crds/
(so `helm upgrade` upgrades them), `kubectl apply -f crds/` installs the same, and the two must never drift apart."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "crds"
CHART = REPO / "helm" / "glrt-operator" / "files" / "crds"


def test_chart_crds_are_byte_identical_copies() -> None:
    names = sorted(p.name for p in SOURCE.glob("*.yaml"))
    assert names, "no CRDs in crds/"
    assert sorted(p.name for p in CHART.iterdir()) == names
    for name in names:
        copy = CHART / name
        # A real file: a symlink breaks `helm package` and charts pulled from a repository.
        assert copy.is_file() and not copy.is_symlink(), f"{copy} must be a plain copy"
        assert copy.read_bytes() == (SOURCE / name).read_bytes(), (
            f"{copy} differs from crds/{name}: cp crds/{name} {copy.relative_to(REPO)}"
        )
