"""kstatus, the real library: what `status.Compute` (sigs.k8s.io/cli-utils/pkg/kstatus/status, the rules Flux's
health checks apply) says of Kubernetes objects, through the small Go program in tests/tools/kstatus."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tests.harness import binaries

# status.Compute's statuses (NotFound and Unknown only come from a cluster lookup, not from an object).
CURRENT, IN_PROGRESS, FAILED, TERMINATING = "Current", "InProgress", "Failed", "Terminating"


@dataclass(frozen=True)
class Result:
    kind: str
    name: str
    status: str
    message: str
    # The standard conditions kstatus derived (Reconciling or Stalled, with reason and message), as dicts.
    conditions: tuple[Mapping[str, str], ...]

    def condition(self, type_: str) -> Mapping[str, str]:
        return next((c for c in self.conditions if c["type"] == type_), {})


def compute(objects: Sequence[Mapping[str, Any]]) -> list[Result]:
    """status.Compute for each object (full objects with apiVersion, kind, metadata and status), in order."""
    completed = subprocess.run(
        [str(binaries.binary("kstatus"))],
        input=json.dumps(list(objects)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"kstatus failed ({completed.returncode}): {completed.stderr.strip()}")
    results = []
    for line in completed.stdout.splitlines():
        raw = json.loads(line)
        results.append(Result(raw["kind"], raw["name"], raw["status"], raw["message"], tuple(raw["conditions"])))
    if len(results) != len(objects):
        raise RuntimeError(f"kstatus answered {len(results)} results for {len(objects)} objects")
    return results


def compute_one(obj: Mapping[str, Any]) -> Result:
    return compute([obj])[0]
