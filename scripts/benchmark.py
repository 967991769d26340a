"""`make bench`: how many GitLab API calls the operator makes per minute in steady state, for 1 and for 50 Runners,
and how long a batch of Runners takes to become Ready. Prints figures; asserts nothing.

Runs the local control plane, the fake GitLab (in this process, to read its call log) and the operator, with a
short resync interval so that a few cycles fit in a minute; the per-minute figure at the default interval (300 s)
is scaled from the measured calls per cycle. Each Runner has one emulated runner pod polling GitLab, as running
pods would, so the token needs no check (see README, rotation)."""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubernetes import client  # noqa: E402

from tests.e2e.conftest import PAT, PROJECT_ID, Runners  # noqa: E402
from tests.fake_gitlab import FakeGitLab  # noqa: E402
from tests.harness.controlplane import ControlPlane  # noqa: E402
from tests.harness.operator import OperatorProcess  # noqa: E402
from tests.harness.runner_pod import EmulatedRunnerPod  # noqa: E402
from tests.harness.waiting import wait_for  # noqa: E402

DEFAULT_RESYNC = 300.0


def measure(cp: ControlPlane, count: int, resync: float, window: float) -> None:
    with FakeGitLab().running() as gitlab, tempfile.TemporaryDirectory() as logs:
        owner = gitlab.add_user("platform")
        gitlab.add_project(PROJECT_ID, "builds", maintainers=[owner])
        gitlab.add_access_token(PAT, owner, scopes=["api"])
        api = cp.api_client()
        namespace = f"bench-{count}-{int(time.time())}"
        client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        runners = Runners(api, namespace, gitlab.url)
        runners.put_secret("gitlab-api", {"token": PAT})
        env = {"GLRT_RESYNC_INTERVAL": str(resync)}
        pods: list[EmulatedRunnerPod] = []
        with OperatorProcess(cp.kubeconfig, namespace, Path(logs), env=env):
            started = time.monotonic()
            for i in range(count):
                runners.create(runners.manifest(name=f"r{i}", replicas=1))
            for i in range(count):
                runners.wait_ready(f"r{i}", timeout=300)
            to_ready = time.monotonic() - started
            for i in range(count):
                pods.append(EmulatedRunnerPod(api, namespace, f"r{i}-runner-config", 0, interval=5.0).start())
            try:
                wait_for(lambda: all(r.managers for r in gitlab.runners.values()), timeout=60)
                time.sleep(resync)  # let every Runner pass one resync with its pod online
                first = len(gitlab.calls)
                time.sleep(window)
                calls = [c for c in gitlab.calls[first:] if not c.path.endswith("/jobs/request")]
            finally:
                for pod in pods:
                    pod.stop()
        client.CoreV1Api(api).delete_namespace(namespace)
        kinds = Counter(f"{c.method} {re.sub(r'/[0-9]+', '/:id', c.path.split('/api/v4')[-1])}" for c in calls)
        per_cycle = len(calls) / count / (window / resync)
        print(f"\n{count} Runner(s): Ready after {to_ready:.1f}s ({count / to_ready:.1f} Runners/s)")
        print(f"  {len(calls)} operator calls in {window:.0f}s at a {resync:.0f}s resync: {dict(kinds)}")
        print(
            f"  = {per_cycle:.2f} calls per Runner per resync cycle, 0 writes: {all(c.method == 'GET' for c in calls)}"
        )
        print(f"  at the default {DEFAULT_RESYNC:.0f}s resync: {per_cycle * count * 60 / DEFAULT_RESYNC:.1f} calls/min")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--resync", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=60.0)
    args = parser.parse_args()
    with ControlPlane() as cp:
        cp.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "crd/runners.glrt.dev")
        for count in args.counts:
            measure(cp, count, args.resync, args.window)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
