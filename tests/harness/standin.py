"""The runner stand-in (tests/runner_standin) as a host binary, built once per source hash into the cache."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from tests.harness import binaries

SOURCE = Path(__file__).resolve().parents[1] / "runner_standin"


def binary() -> Path:
    """Path of the stand-in built from the current source (a static CGO_ENABLED=0 Go build)."""
    digest = hashlib.sha256()
    for path in sorted(SOURCE.glob("*")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    out = binaries.cache_root() / f"runner-standin-{digest.hexdigest()[:16]}" / "gitlab-runner"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false"}
        subprocess.run(["go", "build", "-trimpath", "-o", str(tmp), "."], cwd=SOURCE, env=env, check=True)
        tmp.rename(out)
    return out
