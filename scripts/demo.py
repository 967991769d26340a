"""`make demo`: apply examples/runner.yaml and show what a user gets.

Local mode (default): starts the local control plane (real etcd + kube-apiserver + controller-manager, see
tests/harness) and the project's fake GitLab, runs the operator, applies the example, prints the Runner's status,
the runner as GitLab sees it and the rendered config.toml (token masked), deletes the Runner, and cleans up.
Where the machine allows it (root; containerd and friends installable by scripts/setup-node.sh) a real node
(containerd + kubelet) joins, so the manager pods run (the runner stand-in image, see README) and show 2/2 with
both runner managers online in GitLab; elsewhere one line says why and the pods stay Pending.

Existing cluster: `make demo DEMO_ARGS="--existing-cluster --gitlab-url https://gitlab.example.com --project-id 7"`
with GITLAB_TOKEN set to an access token (scopes create_runner, manage_runner) uses the current kubeconfig instead:
it installs the CRD, creates namespace `glrt-demo` with the token Secret, runs the operator locally and applies the
example there, then deletes what it created.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness import binaries  # noqa: E402
from tests.harness import node as node_harness  # noqa: E402
from tests.harness.controlplane import ControlPlane  # noqa: E402
from tests.harness.operator import OperatorProcess  # noqa: E402

NAMESPACE = "glrt-demo"
DEMO_PAT = "glpat-demo-0123456789abcdef"
TOKEN = re.compile(r"glrt-(?!operator)[A-Za-z0-9_\-]{16,}")  # a runner token, not our own name


def say(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def mask(text: str) -> str:
    return TOKEN.sub(lambda m: m.group(0)[:8] + "…(masked)", text)


class Kubectl:
    def __init__(self, kubectl: Path, kubeconfig: Path | None):
        self.kubectl = kubectl
        self.env = {**os.environ, **({"KUBECONFIG": str(kubeconfig)} if kubeconfig else {})}

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [str(self.kubectl), *args], input=input, env=self.env, capture_output=True, text=True, check=False
        )
        if check and result.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout


@contextmanager
def fake_gitlab(project_id: int, host: str = "127.0.0.1") -> Iterator[str]:
    """The fake GitLab as its own process, as a real GitLab would be (on the node's gateway: pods reach it)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_gitlab", "--host", host, "--port", "0", "--access-token",
         f"{DEMO_PAT}:create_runner,manage_runner", "--project", f"{project_id}:team-a/builds"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"http://\S+", line)
    if not match:
        process.kill()
        raise SystemExit(f"the fake GitLab did not start: {line!r}")
    try:
        yield match.group(0)
    finally:
        process.terminate()
        process.wait(timeout=10)


def runner_manifest(url: str, project_id: int, standin: bool = False) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((REPO / "examples" / "runner.yaml").read_text())
    manifest["metadata"]["namespace"] = NAMESPACE
    manifest["spec"]["gitlab"]["url"] = url
    manifest["spec"]["projectId"] = project_id
    if standin:
        # No registry here: the pods run the locally built stand-in for gitlab-runner (see README).
        manager = manifest["spec"].setdefault("manager", {})
        manager.update({"image": node_harness.image_names()["runner"], "imagePullPolicy": "Never"})
    return manifest


def show_pods(kubectl: Kubectl, gitlab_url: str, access_token: str, runner_id: int, replicas: int) -> None:
    """Wait until the manager pods are Ready and every replica's runner manager is online in GitLab."""
    say(f"Waiting for {replicas}/{replicas} manager pods Ready and {replicas} runner managers online")
    api = f"{gitlab_url.rstrip('/')}/api/v4"
    deadline = time.monotonic() + 180
    online: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        ready = kubectl("get", "statefulset", "builds", "-n", NAMESPACE, "-o", "jsonpath={.status.readyReplicas}")
        managers = httpx.get(f"{api}/runners/{runner_id}/managers", headers={"PRIVATE-TOKEN": access_token}, timeout=10)
        online = [m for m in managers.json() if m.get("status") == "online"] if managers.status_code == 200 else []
        if ready == str(replicas) and len(online) == replicas:
            break
        time.sleep(1)
    print(kubectl("get", "statefulset,pods", "-n", NAMESPACE, "-o", "wide"), end="")
    say(f"Runner managers in GitLab (GET /api/v4/runners/{runner_id}/managers)")
    for m in online:
        print(f"  {m['system_id']}  {m['status']}  contacted_at={m.get('contacted_at')}")
    print(f"{len(online)}/{replicas} online")


def run_demo(
    kubectl: Kubectl,
    kubeconfig: Path | None,
    gitlab_url: str,
    access_token: str,
    project_id: int,
    *,
    standin: bool = False,
) -> None:
    say("Installing the Runner CRD and the access-token Secret")
    print(kubectl("apply", "--server-side", "-f", str(REPO / "crds")), end="")
    kubectl("create", "namespace", NAMESPACE, check=False)
    secret = kubectl(
        "create", "secret", "generic", "gitlab-api", "-n", NAMESPACE, f"--from-literal=token={access_token}",
        "--dry-run=client", "-o", "yaml",
    )  # fmt: skip
    kubectl("apply", "-f", "-", input=secret)

    with tempfile.TemporaryDirectory() as logs:
        config = kubeconfig or Path(os.environ.get("KUBECONFIG", Path.home() / ".kube" / "config"))
        operator = OperatorProcess(config, NAMESPACE, Path(logs), env={"GLRT_RESYNC_INTERVAL": "60"})
        say(f"Running the operator (glrt-operator run --namespace {NAMESPACE})")
        with operator:
            manifest = runner_manifest(gitlab_url, project_id, standin)
            say("kubectl apply -f examples/runner.yaml")
            print(kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest)), end="")
            started = time.monotonic()
            kubectl("wait", "runner/builds", "-n", NAMESPACE, "--for=condition=Ready", "--timeout=90s")
            print(f"Ready after {time.monotonic() - started:.1f}s")

            say("kubectl get runners")
            print(kubectl("get", "runners", "-n", NAMESPACE, "-o", "wide"), end="")
            body = json.loads(kubectl("get", "runner/builds", "-n", NAMESPACE, "-o", "json"))
            say("The Runner's status")
            print(mask(yaml.safe_dump(body["status"], sort_keys=False)), end="")

            runner_id = body["status"]["runnerId"]
            if standin:
                show_pods(kubectl, gitlab_url, access_token, runner_id, manifest["spec"]["replicas"])
            say(f"The runner as GitLab sees it (GET /api/v4/runners/{runner_id})")
            api = f"{gitlab_url.rstrip('/')}/api/v4"
            seen = httpx.get(f"{api}/runners/{runner_id}", headers={"PRIVATE-TOKEN": access_token}, timeout=10)
            print(json.dumps(seen.json(), indent=2))

            say("The rendered config.toml (Secret builds-runner-config; token masked)")
            data = json.loads(kubectl("get", "secret", "builds-runner-config", "-n", NAMESPACE, "-o", "json"))["data"]
            print(mask(base64.b64decode(data["config.toml"]).decode()), end="")
            token = TOKEN.search(base64.b64decode(data["config.toml"]).decode())
            issued = token.group(0) if token else ""
            ids = {k: base64.b64decode(v).decode().strip() for k, v in data.items() if k.startswith("system-id-")}
            print(f"per-replica system ids: {ids}")

            say("The StatefulSet of runner manager pods")
            print(kubectl("get", "statefulset", "builds", "-n", NAMESPACE, "-o", "wide"), end="")
            say("Events")
            print(kubectl("get", "events", "-n", NAMESPACE, "--field-selector", "involvedObject.kind=Runner"), end="")

            say("kubectl delete runner builds (the finalizer deletes the runner in GitLab first)")
            print(kubectl("delete", "runner/builds", "-n", NAMESPACE, "--timeout=60s"), end="")
            gone = httpx.get(f"{api}/runners/{runner_id}", headers={"PRIVATE-TOKEN": access_token}, timeout=10)
            print(f"GET /api/v4/runners/{runner_id} now answers {gone.status_code}: {gone.text}")
        secrets = [s for s in (access_token, issued) if s]
        if any(secret in p.read_text() for p in Path(logs).iterdir() for secret in secrets):
            raise SystemExit("a token appeared in the operator's output")
        print("\nThe operator's output held no token.")
    with suppress(SystemExit):
        kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--existing-cluster", action="store_true", help="use the current kubeconfig and a real GitLab")
    parser.add_argument("--gitlab-url", help="with --existing-cluster: the GitLab URL")
    parser.add_argument("--project-id", type=int, default=7, help="the project to register the runner for")
    args = parser.parse_args()

    binaries.ensure("kubectl")
    kubectl_path = binaries.binary("kubectl")
    if args.existing_cluster:
        token = os.environ.get("GITLAB_TOKEN")
        if not args.gitlab_url or not token:
            parser.error("--existing-cluster needs --gitlab-url and the GITLAB_TOKEN environment variable")
        run_demo(Kubectl(kubectl_path, None), None, args.gitlab_url, token, args.project_id)
        return 0

    options = node_harness.NodeOptions()
    reason = node_harness.unavailable_reason()
    say("Starting the local control plane (etcd, kube-apiserver, kube-controller-manager)")
    gateway = node_harness.node_gateway(options)
    # With a node, the apiserver advertises the node's gateway: pods reach it through the kubernetes Service.
    with ControlPlane(extra_ips=[gateway], advertise_address=gateway if reason is None else None) as cp:
        print(f"kube-apiserver at {cp.server}, ready in {cp.startup_seconds:.1f}s")
        with ExitStack() as stack:
            host = "127.0.0.1"
            if reason is None:
                say("Starting a node (containerd, kubelet, kube-scheduler; images built once and cached)")
                node = stack.enter_context(node_harness.running(cp, options))
                print(f"node {node.name} Ready in {node.startup_seconds:.1f}s")
                host = node.gateway
            else:
                print(f"No node on this machine ({reason}): the manager pods will stay Pending.")
            url = stack.enter_context(fake_gitlab(args.project_id, host))
            print(f"fake GitLab at {url}")
            run_demo(
                Kubectl(kubectl_path, cp.kubeconfig),
                cp.kubeconfig,
                url,
                DEMO_PAT,
                args.project_id,
                standin=reason is None,
            )
    say("Cleaned up: control plane stopped, node and fake GitLab stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
