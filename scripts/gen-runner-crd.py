#!/usr/bin/env python3
"""Regenerate spec.config in crds/runners.glrt.dev.yaml (and the chart's copy) from runner_config/keys.json.

Usage: scripts/gen-runner-crd.py [--check]   (--check: exit 1 when a committed file is stale; writes nothing)
"""

from __future__ import annotations

import sys
from pathlib import Path

from glrt_operator.runner_config.crd import with_generated_config

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "crds" / "runners.glrt.dev.yaml"
COPIES = (SOURCE, ROOT / "helm" / "glrt-operator" / "crds" / "runners.glrt.dev.yaml")


def main(argv: list[str]) -> int:
    generated = with_generated_config(SOURCE.read_text())
    stale = [path for path in COPIES if path.read_text() != generated]
    if "--check" in argv:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is stale: run make crds", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(generated)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
