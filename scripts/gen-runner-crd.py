#!/usr/bin/env python3
"""Regenerate the CRDs in crds/ (and the chart's copies): spec.config of the Runner CRD from
runner_config/keys.json, and in the CRDs of kinds released under an older version the deprecated versions from the
storage version.

Usage: scripts/gen-runner-crd.py [--check]   (--check: exit 1 when a committed file is stale; writes nothing)
"""

from __future__ import annotations

import sys
from pathlib import Path

from glrt_operator.core.api import VERSIONED_KINDS
from glrt_operator.core.crd_versions import with_deprecated_versions
from glrt_operator.runner_config.crd import with_generated_config

ROOT = Path(__file__).resolve().parents[1]
CHART_CRDS = ROOT / "helm" / "glrt-operator" / "files" / "crds"
VERSIONED = {f"{kind.crd_name}.yaml" for kind in VERSIONED_KINDS}


def generated(name: str, text: str) -> str:
    if name == "runners.glrt.dev.yaml":
        text = with_generated_config(text)
    if name in VERSIONED:  # the kinds released under a deprecated version (core.api.VERSIONED_KINDS)
        text = with_deprecated_versions(text)
    return text


def main(argv: list[str]) -> int:
    stale: list[tuple[Path, str]] = []
    for source in sorted((ROOT / "crds").glob("*.yaml")):
        text = generated(source.name, source.read_text())
        stale += [(path, text) for path in (source, CHART_CRDS / source.name) if path.read_text() != text]
    if "--check" in argv:
        for path, _ in stale:
            print(f"{path.relative_to(ROOT)} is stale: run make crds", file=sys.stderr)
        return 1 if stale else 0
    for path, text in stale:
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
