"""Locates the pinned binaries that scripts/fetch-binaries.sh builds into the cache, building them if missing.

The cache layout is owned by the script: ``$GLRT_CACHE/<name>-<version>/bin/<binary>``, complete once
``<name>-<version>/.complete`` exists. Versions come from scripts/versions.env, so the pins live in one place.
"""

from __future__ import annotations

import collections
import fcntl
import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO_ROOT / "scripts" / "versions.env"
FETCH_SCRIPT = REPO_ROOT / "scripts" / "fetch-binaries.sh"

# A cold kubernetes build takes 15-30 minutes on two cores; anything past this is a hung build.
BUILD_DEADLINE_SECONDS = 3600.0


class BinaryError(RuntimeError):
    """A pinned binary is not in the cache and could not be built."""


@functools.cache
def versions() -> dict[str, str]:
    """KEY=VALUE pairs of scripts/versions.env (comments and blank lines skipped)."""
    result: dict[str, str] = {}
    for raw in VERSIONS_FILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        result[key.strip()] = value.strip().strip("'\"")
    return result


def cache_root() -> Path:
    return Path(os.environ.get("GLRT_CACHE") or Path.home() / ".cache" / "glrt-operator")


# component (fetch-binaries.sh argument) -> (cache entry name from versions, binaries it provides)
_COMPONENTS: dict[str, tuple[Callable[[dict[str, str]], str], tuple[str, ...]]] = {
    "kubernetes": (
        lambda v: f"kubernetes-{v['KUBERNETES_VERSION']}",
        ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"),
    ),
    "kube-proxy": (lambda v: f"kube-proxy-{v['KUBERNETES_VERSION']}", ("kube-proxy",)),
    "etcd": (lambda v: f"etcd-{v['ETCD_VERSION']}", ("etcd",)),
    "kubectl": (lambda v: f"kubectl-layer-{v['KUBECTL_LAYER_VERSION']}", ("kubectl", "helm")),
    "promtool": (lambda v: f"promtool-{v['PROMETHEUS_MODULE_VERSION']}", ("promtool",)),
    "registry": (lambda v: f"distribution-{v['DISTRIBUTION_MODULE_VERSION']}", ("registry",)),
    "crane": (lambda v: f"crane-{v['GO_CONTAINERREGISTRY_MODULE_VERSION']}", ("crane",)),
    "gitlab-runner": (
        lambda v: f"gitlab-runner-{v['GITLAB_RUNNER_MODULE_VERSION']}",
        ("gitlab-runner",),
    ),
}
_BINARY_TO_COMPONENT = {binary: comp for comp, (_, binaries) in _COMPONENTS.items() for binary in binaries}


def entry_dir(component: str) -> Path:
    if component not in _COMPONENTS:
        raise BinaryError(f"unknown component {component!r}; known: {', '.join(_COMPONENTS)}")
    return cache_root() / _COMPONENTS[component][0](versions())


def is_cached(component: str) -> bool:
    return (entry_dir(component) / ".complete").is_file()


def ensure(*components: str) -> None:
    """Make sure each component's cache entry is complete, running fetch-binaries.sh for the missing ones."""
    for component in components:
        if is_cached(component):
            continue
        with _build_lock(component):
            _wait_for_foreign_build(component)
            if not is_cached(component):  # a concurrent test process may have finished it meanwhile
                _run_fetch(component)


def binary(name: str) -> Path:
    """Absolute path of a pinned binary (kube-apiserver, kube-controller-manager, etcd, kubectl, helm...)."""
    component = _BINARY_TO_COMPONENT.get(name)
    if component is None:
        raise BinaryError(f"unknown binary {name!r}; known: {', '.join(sorted(_BINARY_TO_COMPONENT))}")
    ensure(component)
    path = entry_dir(component) / "bin" / name
    if not os.access(path, os.X_OK):
        raise BinaryError(f"{path} is missing or not executable although {path.parent.parent} is complete")
    return path


@contextmanager
def _build_lock(component: str) -> Iterator[None]:
    # Serializes builds between test processes (e.g. pytest-xdist workers): a second fetch-binaries.sh run
    # for the same entry would delete the first one's half-built directory.
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{component}.harness.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _foreign_builds(component: str) -> list[int]:
    """PIDs of fetch-binaries.sh processes (started by hand, not by us) that will build ``component``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        for i, arg in enumerate(argv):
            if arg.endswith("fetch-binaries.sh"):
                wanted = [a for a in argv[i + 1 :] if a]
                if not wanted or component in wanted:
                    pids.append(int(proc.name))
                break
    return pids


def _wait_for_foreign_build(component: str) -> None:
    # Starting a second build would `rm -rf` the running one's output, so wait for it instead.
    deadline = time.monotonic() + BUILD_DEADLINE_SECONDS
    announced = False
    while not is_cached(component) and (pids := _foreign_builds(component)):
        if not announced:
            print(
                f"harness: waiting for running fetch-binaries.sh (pid {pids[0]}) to build {component}",
                file=sys.stderr,
                flush=True,
            )
            announced = True
        if time.monotonic() > deadline:
            raise BinaryError(f"fetch-binaries.sh (pid {pids[0]}) did not finish {component} in time")
        time.sleep(5)


def _run_fetch(component: str) -> None:
    print(f"harness: {entry_dir(component)} missing; running {FETCH_SCRIPT} {component}", file=sys.stderr)
    tail: collections.deque[str] = collections.deque(maxlen=50)
    # Progress goes through to stderr (a cold build is long); the tail is kept for the error message.
    with subprocess.Popen(
        ["bash", str(FETCH_SCRIPT), component],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO_ROOT,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip("\n"))
            sys.stderr.write(line)
        code = proc.wait(timeout=BUILD_DEADLINE_SECONDS)
    if code != 0 or not is_cached(component):
        output = "\n".join(tail)
        raise BinaryError(
            f"{FETCH_SCRIPT} {component} failed (exit code {code}); {entry_dir(component)} is not complete. "
            f"Last output:\n{output}"
        )
