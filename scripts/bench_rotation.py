"""`make bench`, second part: how long each replica is blind after a token rotation, on a real node. Prints
figures; asserts nothing.

A Runner with 2 manager pods running the runner stand-in, the kubelet at its default `syncFrequency` (1m), N
rotations (`--rotations`, 5). Per replica: the blackout (from GitLab's first refusal of the old token to the
replica's first accepted poll with the new one) and the time from the reset to that poll. Measured twice: with the
operator touching the pods after storing the token (what it does) and without (GLRT_REFRESH_PODS=false: the
kubelet's periodic sync alone)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
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
from tests.harness.waiting import wait_for  # noqa: E402


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
    gateway = node_gateway(NodeOptions())
    with ControlPlane(advertise_address=gateway) as cp, node_harness.running(cp) as node:
        cp.install_crds(REPO / "crds")
        print("with the operator touching the pods after storing the token (now):")
        now = rotation_blackouts(cp, node, rotations, refresh=True)
        print("without (GLRT_REFRESH_PODS=false; the kubelet's periodic sync alone, as before):")
        before = rotation_blackouts(cp, node, rotations, refresh=False)
    print(f"now:    {summary(now)}")
    print(f"before: {summary(before)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rotations", type=int, default=5)
    args = parser.parse_args()
    measure_rotation(args.rotations)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
