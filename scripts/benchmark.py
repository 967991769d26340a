"""`make bench`: how many GitLab API calls the operator makes per minute in steady state, for 1 and for 50 Runners,
and how long a batch of Runners takes to become Ready; and, on a real node where the machine allows one, how long
each replica is blind after a token rotation. Prints figures; asserts nothing.

Rotation (`--rotation-only` to run just this part): a Runner with 2 manager pods running the runner stand-in, the
kubelet at its default `syncFrequency` (1m), 5 rotations. Per replica: the blackout (from GitLab's first refusal
of the old token to the replica's first accepted poll with the new one) and the time from the reset to that poll.
Measured twice: with the operator touching the pods after storing the token (what it does) and without
(GLRT_REFRESH_PODS=false: the kubelet's periodic sync alone, as before).

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
from tests.harness import node as node_harness  # noqa: E402
from tests.harness.controlplane import ControlPlane  # noqa: E402
from tests.harness.node import Node, NodeOptions, image_names, node_gateway  # noqa: E402
from tests.harness.operator import OperatorProcess  # noqa: E402
from tests.harness.rotation import blackouts, good_polls_after, pods_settled, reset_times  # noqa: E402
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


def restarts(core: client.CoreV1Api, namespace: str) -> dict[str, int]:
    return {
        p.metadata.name: sum(c.restart_count for c in p.status.container_statuses or [])
        for p in core.list_namespaced_pod(namespace).items
    }


def rotate_once(
    runners: Runners, gitlab: FakeGitLab, ids: set[str], requested_at: str
) -> tuple[dict[str, float], dict[str, float]]:
    """Request a rotation; per replica, its blackout and the time from the reset to its first accepted poll."""
    resets = len(reset_times(gitlab))
    runners.patch_spec(tokenRotation={"requestedAt": requested_at})
    reset_at = wait_for(lambda: (t := reset_times(gitlab))[resets:] and t[resets], timeout=60)
    gaps = wait_for(
        lambda: (b := blackouts(gitlab, reset_at, ids)).keys() == ids and b,
        timeout=300,
        message="each replica polls with the new token",
    )
    return gaps, good_polls_after(gitlab, reset_at, ids)


def rotation_blackouts(cp: ControlPlane, node: Node, rotations: int, refresh: bool) -> list[tuple[float, float]]:
    """(blackout, reset -> first accepted poll) per replica per rotation, in seconds."""
    with FakeGitLab().running(host=node.gateway) as gitlab, tempfile.TemporaryDirectory() as logs:
        owner = gitlab.add_user("platform")
        gitlab.add_project(PROJECT_ID, "builds", maintainers=[owner])
        gitlab.add_access_token(PAT, owner, scopes=["api"])
        api = cp.api_client()
        core = client.CoreV1Api(api)
        namespace = f"bench-rotation-{'after' if refresh else 'before'}-{int(time.time())}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        runners = Runners(api, namespace, gitlab.url)
        runners.put_secret("gitlab-api", {"token": PAT})
        env = {"GLRT_RESYNC_INTERVAL": "300", "GLRT_REFRESH_PODS": "true" if refresh else "false"}
        figures: list[tuple[float, float]] = []
        with OperatorProcess(cp.kubeconfig, namespace, Path(logs), env=env):
            # The stand-in image, the default check_interval (3 s).
            manager = {"image": image_names()["runner"], "imagePullPolicy": "Never"}
            runners.create(runners.manifest(replicas=2, manager=manager))
            ids = {r["systemId"] for r in runners.wait_ready(timeout=120)["status"]["replicas"]}
            runner_id = next(iter(gitlab.runners))
            polling = lambda: {s for s, m in gitlab.runners[runner_id].managers.items() if m.contacted_at}  # noqa: E731
            wait_for(lambda: polling() == ids, timeout=120, message="2 managers poll")
            # A new pod is synced by the kubelet several times while its probes settle, each time refreshing its
            # Secret volume: rotate only once both pods have been Ready for a while, as in a running fleet.
            wait_for(lambda: pods_settled(core, namespace, 30.0), timeout=180, message="pods Ready for 30 s")
            before = restarts(core, namespace)
            for i in range(rotations):
                gaps, polls = rotate_once(runners, gitlab, ids, f"bench-{i}-{time.time()}")
                figures += [(gaps[s], polls[s]) for s in sorted(ids)]
                print(
                    f"  rotation {i + 1}: blackout {', '.join(f'{gaps[s]:.1f}s' for s in sorted(ids))}"
                    f" (reset -> new token on the wire {', '.join(f'{polls[s]:.1f}s' for s in sorted(ids))})",
                    flush=True,
                )
            after = restarts(core, namespace)
            print(f"  pod restarts during the rotations: {sum(after.values()) - sum(before.values())}")
        core.delete_namespace(namespace)
        return figures


def summary(figures: list[tuple[float, float]]) -> str:
    gaps = sorted(g for g, _ in figures)
    return (
        f"blackout per replica max {gaps[-1]:.1f}s, median {gaps[len(gaps) // 2]:.1f}s over {len(gaps)} values;"
        f" reset -> new token polled max {max(p for _, p in figures):.1f}s"
    )


def measure_rotation(rotations: int) -> None:
    print("\n=== Token rotation on a real node (2 replicas, kubelet syncFrequency 1m, check_interval 3s)")
    reason = node_harness.unavailable_reason()
    if reason is not None:
        print(f"rotation figures skipped: no node on this machine ({reason})")
        return
    with ControlPlane(extra_ips=[node_gateway(NodeOptions())]) as cp, node_harness.running(cp) as node:
        cp.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "crd/runners.glrt.dev")
        print("with the operator touching the pods after storing the token (now):")
        now = rotation_blackouts(cp, node, rotations, refresh=True)
        print("without (GLRT_REFRESH_PODS=false; the kubelet's periodic sync alone, as before):")
        before = rotation_blackouts(cp, node, rotations, refresh=False)
    print(f"now:    {summary(now)}")
    print(f"before: {summary(before)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--resync", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--rotations", type=int, default=5)
    parser.add_argument("--rotation-only", action="store_true", help="only the rotation figures (on a node)")
    args = parser.parse_args()
    if not args.rotation_only:
        with ControlPlane() as cp:
            cp.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
            cp.kubectl("wait", "--for=condition=Established", "crd/runners.glrt.dev")
            for count in args.counts:
                measure(cp, count, args.resync, args.window)
    measure_rotation(args.rotations)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
