"""`make bench BENCH=jobs`: CI jobs through the kubernetes executor under churn, on a real node. Prints figures;
asserts nothing.

A Runner with 2 manager pods (the runner stand-in, `concurrent` 10) whose jobs run in their own namespace, with the
permissions the operator binds there (the chart's executor ClusterRoles, rendered from the chart: nothing written
by hand). N jobs (`--jobs`, 40) are queued in GitLab at once; while they run, the token is rotated and the Runner
scaled from 2 to 1 (the scaled-away pod drains its running jobs). Then: how many succeeded, failed, were lost or
left running, and the time from a job's queueing in GitLab to its pod Running (p50, p95)."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubernetes import client  # noqa: E402

from tests.e2e.conftest import PAT, PROJECT_ID, Runners  # noqa: E402
from tests.fake_gitlab import FakeGitLab, jobs  # noqa: E402
from tests.harness import binaries  # noqa: E402
from tests.harness import node as node_harness  # noqa: E402
from tests.harness.controlplane import ControlPlane  # noqa: E402
from tests.harness.node import NodeOptions, image_names, node_gateway  # noqa: E402
from tests.harness.operator import OperatorProcess  # noqa: E402
from tests.harness.rotation import reset_times  # noqa: E402
from tests.harness.waiting import wait_for  # noqa: E402

EXECUTOR_ROLE = "bench-executor"


def install_executor_roles(cp: ControlPlane) -> None:
    """The chart's executor ClusterRoles, as the chart renders them (the base name set to EXECUTOR_ROLE)."""
    helm = binaries.binary("helm")
    rendered = subprocess.run(
        [str(helm), "template", "bench", str(REPO / "helm" / "glrt-operator"), "--show-only",
         "templates/executor-rbac.yaml"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    base = "bench-glrt-operator-default-executor"
    cp.kubectl("apply", "-f", "-", input=rendered.replace(base, EXECUTOR_ROLE))


# The Runner's tags (the manifest's, runUntagged false): a job without them is never handed to it.
TAGS = ["docker", "linux"]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run(jobs_count: int, seconds: int) -> None:
    gateway = node_gateway(NodeOptions())
    with ControlPlane(advertise_address=gateway) as cp, node_harness.running(cp) as node:
        cp.install_crds(REPO / "crds")
        install_executor_roles(cp)
        api = cp.api_client()
        core = client.CoreV1Api(api)
        suffix = int(time.time())
        ns, jobs_ns = f"bench-jobs-{suffix}", f"bench-jobs-{suffix}-pods"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        accept = {"glrt.dev/accept-from": ns}
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=jobs_ns, annotations=accept)))
        with FakeGitLab().running(host=node.gateway) as gitlab, tempfile.TemporaryDirectory() as logs:
            owner = gitlab.add_user("platform")
            gitlab.add_project(PROJECT_ID, "builds", maintainers=[owner])
            gitlab.add_access_token(PAT, owner, scopes=["api"])
            runners = Runners(api, ns, gitlab.url)
            runners.put_secret("gitlab-api", {"token": PAT})
            env = {"GLRT_RESYNC_INTERVAL": "30", "GLRT_EXECUTOR_CLUSTER_ROLE": EXECUTOR_ROLE}
            operator = OperatorProcess(cp.kubeconfig, ns, Path(logs), env=env)
            operator.args += ["--namespace", jobs_ns]  # it serves the executor namespace too (the chart's watch list)
            with operator:
                images = image_names()
                runners.create(
                    runners.manifest(
                        replicas=2,
                        manager={"image": images["runner"], "imagePullPolicy": "Never"},
                        config={
                            "concurrent": 10,
                            "checkInterval": 1,
                            "kubernetes": {
                                "namespace": jobs_ns,
                                "image": images["job"],
                                "helperImage": images["helper"],
                                "pullPolicy": ["if-not-present"],
                                "cpuRequest": "10m",
                                "memoryRequest": "16Mi",
                                "pollInterval": 1,
                            },
                        },
                    )
                )
                try:
                    runner_id = int(runners.wait_ready(timeout=180)["status"]["runnerId"])
                except TimeoutError:
                    conditions = (runners.get() or {}).get("status", {}).get("conditions")
                    print(f"Runner not Ready: {json.dumps(conditions)}\n{node.describe(ns)}", file=sys.stderr)
                    raise
                wait_for(
                    lambda: len([m for m in gitlab.runners[runner_id].managers.values() if m.contacted_at]) == 2,
                    timeout=180,
                    message="2 managers poll",
                )
                figures = churn(runners, gitlab, core, runner_id, jobs_ns, jobs_count, seconds)
        print(json.dumps(figures, indent=2))


def churn(
    runners: Runners, gitlab: FakeGitLab, core: client.CoreV1Api, runner_id: int, jobs_ns: str, count: int, seconds: int
) -> dict[str, object]:
    started = time.monotonic()
    queued = {
        gitlab.enqueue_job(
            runner_id=runner_id, tags=TAGS, payload=jobs.script_job([f"sleep {seconds}", "echo done"])
        ): time.monotonic()
        for _ in range(count)
    }
    running: dict[int, float] = {}
    churned, churned_at = False, 0.0
    deadline = started + 30 * seconds + 600
    while time.monotonic() < deadline:
        for pod in core.list_namespaced_pod(jobs_ns).items:
            job = int((pod.metadata.annotations or {}).get("job.runner.gitlab.com/id", 0))
            if job in queued and job not in running and pod.status.phase == "Running":
                running[job] = time.monotonic()
        results = jobs.results(gitlab)
        if not churned and len(running) >= count // 4:
            # In the middle: a rotation and a scale-down, while jobs run on both replicas.
            runners.patch_spec(tokenRotation={"requestedAt": datetime.now(UTC).isoformat()}, replicas=1)
            churned_at = time.monotonic() - started
            churned = True
        if len([j for j in queued if j in results]) == count:
            break
        time.sleep(0.2)
    results = jobs.results(gitlab)
    states = [results.get(j, {}).get("state", "none") for j in queued]
    waits = [running[j] - queued[j] for j in running]
    done_after = time.monotonic() - started
    # The executor deletes each job pod once its job is reported; a pod still terminating is not yet gone.
    at_done = len(core.list_namespaced_pod(jobs_ns).items)
    gone_by = time.monotonic() + 120
    while core.list_namespaced_pod(jobs_ns).items and time.monotonic() < gone_by:
        time.sleep(0.5)
    left = [p.metadata.name for p in core.list_namespaced_pod(jobs_ns).items]
    return {
        "jobs": count,
        "success": states.count("success"),
        "failed": states.count("failed"),
        "failure_reasons": sorted(
            {results[j]["failure_reason"] for j in queued if results.get(j, {}).get("failure_reason")}
        ),
        "lost (no final state)": states.count("none"),
        "left running in GitLab": len([j for j, *_ in gitlab.assigned_jobs if j in queued and j not in results]),
        "job pods present when the last job ended": at_done,
        "job pods left 120 s later": len(left),
        "last job pod gone after (s)": round(time.monotonic() - started, 1) if not left else None,
        "queued -> pod Running p50 (s)": round(statistics.median(waits), 2) if waits else None,
        "queued -> pod Running p95 (s)": round(percentile(waits, 0.95), 2) if waits else None,
        "rotation and scale 2 -> 1 at (s)": round(churned_at, 1) if churned else "never (too few jobs ran)",
        "all done after (s)": round(done_after, 1),
        "token resets during the run": len(reset_times(gitlab)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--job-seconds", type=int, default=20, help="how long each job's script sleeps")
    args = parser.parse_args()
    print(f"\n=== {args.jobs} CI jobs through the kubernetes executor (2 replicas, concurrent 10), with a token "
          "rotation and a scale-down 2 -> 1 in the middle")  # fmt: skip
    reason = node_harness.unavailable_reason()
    if reason is not None:
        print(f"jobs figures skipped: no node on this machine ({reason})")
        return 0
    run(args.jobs, args.job_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
