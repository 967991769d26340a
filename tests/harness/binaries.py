"""Locates the pinned binaries that scripts/fetch-binaries.sh builds into the cache, building them if missing.

The cache layout is owned by the script: ``$GLRT_CACHE/<name>-<version>/bin/<binary>``, complete once
``<name>-<version>/.complete`` exists. Versions come from scripts/versions.env, so the pins live in one place.

Two Kubernetes versions are built: the pinned one (``KUBERNETES_VERSION``) and the oldest minor the chart supports
(``KUBERNETES_OLDEST_VERSION``). The harness runs the one ``GLRT_KUBERNETES_VERSION`` names (``pinned``, the default,
``oldest``, or either version itself); ``binary(name, kubernetes_version=...)`` picks another.
"""

from __future__ import annotations

import collections
import fcntl
import functools
import hashlib
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
TOOLS_DIR = REPO_ROOT / "tests" / "tools"

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


KUBERNETES_VERSION_ENV = "GLRT_KUBERNETES_VERSION"
KUBERNETES_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")
# Built once per Kubernetes version from k8s.io/kubernetes: fetch-binaries.sh component NAME builds it at the pinned
# version, NAME-oldest at the oldest supported one; component -> binaries. Another such binary (kube-proxy) is one
# entry here and its two cases in fetch-binaries.sh.
PER_KUBERNETES_VERSION: dict[str, tuple[str, ...]] = {"kubernetes": KUBERNETES_BINARIES, "kube-proxy": ("kube-proxy",)}
# component suffix -> the versions.env key of the Kubernetes version it builds
_VERSION_SUFFIXES = {"": "KUBERNETES_VERSION", "-oldest": "KUBERNETES_OLDEST_VERSION"}


def pinned_kubernetes_version() -> str:
    return versions()["KUBERNETES_VERSION"]


def oldest_kubernetes_version() -> str:
    return versions()["KUBERNETES_OLDEST_VERSION"]


def kubernetes_version(selector: str | None = None) -> str:
    """The Kubernetes version for ``selector`` (``pinned``, ``oldest`` or a version that fetch-binaries.sh builds);
    without one, the version $GLRT_KUBERNETES_VERSION selects, by default the pinned one."""
    selector = selector or os.environ.get(KUBERNETES_VERSION_ENV) or "pinned"
    named = {"pinned": pinned_kubernetes_version(), "oldest": oldest_kubernetes_version()}
    version = named.get(selector, selector)
    kubernetes_component(version)  # refuses a version nothing builds
    return version


_selected_kubernetes_version = kubernetes_version  # binary()'s argument shadows the function's name


def kubernetes_component(version: str, base: str = "kubernetes") -> str:
    """The fetch-binaries.sh component that builds ``base`` (a key of PER_KUBERNETES_VERSION) at ``version``."""
    for suffix, key in _VERSION_SUFFIXES.items():
        if versions()[key] == version:
            return f"{base}{suffix}"
    known = ", ".join(versions()[key] for key in _VERSION_SUFFIXES.values())
    raise BinaryError(f"no Kubernetes {version} is built (versions.env has {known}); see {KUBERNETES_VERSION_ENV}")


def minor_version(version: str) -> tuple[int, int]:
    """(1, 32) for v1.32.13."""
    major, minor = version.lstrip("v").split(".")[:2]
    return int(major), int(minor)


@functools.cache
def tool_hash(name: str) -> str:
    """fetch-binaries.sh's tool_hash: sha256 over `sha256sum`'s lines for every file of tests/tools/NAME, sorted by
    path (as `LC_ALL=C sort` orders them); the first 12 hex digits."""
    root = TOOLS_DIR / name
    paths = sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: os.fsencode(p.relative_to(root)))
    listing = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  ./{p.relative_to(root)}\n" for p in paths)
    return hashlib.sha256(listing.encode()).hexdigest()[:12]


# component (fetch-binaries.sh argument) -> (cache entry name from versions, binaries it provides)
_COMPONENTS: dict[str, tuple[Callable[[dict[str, str]], str], tuple[str, ...]]] = {
    **{
        f"{base}{suffix}": (lambda v, base=base, key=key: f"{base}-{v[key]}", provided)
        for base, provided in PER_KUBERNETES_VERSION.items()
        for suffix, key in _VERSION_SUFFIXES.items()
    },
    "etcd": (lambda v: f"etcd-{v['ETCD_VERSION']}", ("etcd",)),
    "kubectl": (lambda v: f"kubectl-layer-{v['KUBECTL_LAYER_VERSION']}", ("kubectl", "helm")),
    "promtool": (lambda v: f"promtool-{v['PROMETHEUS_MODULE_VERSION']}", ("promtool",)),
    # tests/tools/: kstatus' status.Compute, and Argo CD's Lua health checks run as Argo CD runs them
    "kstatus": (lambda _: f"kstatus-{tool_hash('kstatus')}", ("kstatus",)),
    "argo-health": (lambda _: f"argo-health-{tool_hash('argo-health')}", ("argo-health",)),
    "registry": (lambda v: f"distribution-{v['DISTRIBUTION_MODULE_VERSION']}", ("registry",)),
    "crane": (lambda v: f"crane-{v['GO_CONTAINERREGISTRY_MODULE_VERSION']}", ("crane",)),
    "gitlab-runner": (
        lambda v: f"gitlab-runner-{v['GITLAB_RUNNER_MODULE_VERSION']}",
        ("gitlab-runner",),
    ),
}
_BINARY_TO_COMPONENT = {binary: comp for comp, (_, binaries) in _COMPONENTS.items() for binary in binaries}
_BINARY_TO_VERSIONED = {binary: base for base, provided in PER_KUBERNETES_VERSION.items() for binary in provided}


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


def binary(name: str, kubernetes_version: str | None = None) -> Path:
    """Absolute path of a pinned binary (kube-apiserver, kube-controller-manager, etcd, kubectl, helm...). The
    Kubernetes binaries are those of ``kubernetes_version`` (default: :func:`kubernetes_version`)."""
    if (base := _BINARY_TO_VERSIONED.get(name)) is not None:
        component = kubernetes_component(kubernetes_version or _selected_kubernetes_version(), base)
    elif (found := _BINARY_TO_COMPONENT.get(name)) is not None:
        component = found
    else:
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
