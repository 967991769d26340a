"""Argo CD's health assessment of objects under a custom Lua health check, run by the interpreter Argo CD embeds
(gopher-lua) the way Argo CD runs it, through the small Go program in tests/tools/argo-health."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness import binaries

HEALTHY, PROGRESSING, DEGRADED, SUSPENDED, MISSING, UNKNOWN = (
    "Healthy",
    "Progressing",
    "Degraded",
    "Suspended",
    "Missing",
    "Unknown",
)


@dataclass(frozen=True)
class Health:
    kind: str
    name: str
    status: str
    message: str


def assess(script: Path, objects: Sequence[Mapping[str, Any]]) -> list[Health]:
    """The health Argo CD gives each object with ``script`` as its custom health check, in order."""
    completed = subprocess.run(
        [str(binaries.binary("argo-health")), str(script)],
        input=json.dumps(list(objects)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"argo-health failed ({completed.returncode}): {completed.stderr.strip()}")
    results = [Health(**json.loads(line)) for line in completed.stdout.splitlines()]
    if len(results) != len(objects):
        raise RuntimeError(f"argo-health answered {len(results)} results for {len(objects)} objects")
    return results


def assess_one(script: Path, obj: Mapping[str, Any]) -> Health:
    return assess(script, [obj])[0]
