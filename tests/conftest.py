"""Top-level fixtures: one real control plane per test session, an admin client, a namespace per test.

The control plane runs the Kubernetes version $GLRT_KUBERNETES_VERSION selects (default: the pinned one; `make
compat` selects the oldest supported minor). Tests marked ``oldest_kubernetes`` (the CRD, CEL and RBAC tier) run
on both: once on that version and once on the oldest minor, each version's control plane started once."""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.harness import binaries
from tests.harness.controlplane import ControlPlane
from tests.harness.node import Node, NodeError, NodeOptions, build_images, node_gateway, unavailable_reason

REPO_ROOT = Path(__file__).resolve().parents[1]
CRD_DIR = REPO_ROOT / "crds"

_binaries_error: binaries.BinaryError | None = None
_startup_seconds: list[tuple[str, float]] = []
_node_images: dict[str, Path] | None = None
_node_seconds: dict[str, float] = {}
_node_selected = False
# Kubernetes version -> its running control plane, stopped at the end of the session. Kept outside the
# `control_plane` fixture so that switching between versions (a session-scoped parameter) restarts nothing.
_control_planes: dict[str, ControlPlane] = {}

OLDEST_MARKER = "oldest_kubernetes"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker(OLDEST_MARKER) is None:
        return
    if "kubernetes_version" not in metafunc.fixturenames:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid} is marked {OLDEST_MARKER} but uses no control plane (control_plane or "
            "kubernetes_version fixture)"
        )
    selected, oldest = binaries.kubernetes_version(), binaries.oldest_kubernetes_version()
    if selected == oldest:  # `make compat`: every test runs on the oldest minor already
        return
    # None, not the selected version: the same cache key as an unparametrised test's, so both share one control
    # plane (and the session fixtures built on it) instead of tearing it down at each switch.
    metafunc.parametrize("kubernetes_version", [None, oldest], ids=[selected, oldest], indirect=True, scope="session")


def pytest_collection_finish(session: pytest.Session) -> None:
    # A cold build of the binaries takes many minutes; doing it here, before any test runs, keeps it out of
    # the per-test timeout (pytest-timeout counts fixture setup). Only when cluster tests were selected.
    global _binaries_error  # noqa: PLW0603
    if session.config.option.collectonly or not any(i.get_closest_marker("cluster") for i in session.items):
        return
    global _node_images, _node_selected  # noqa: PLW0603
    _node_selected = any("node" in getattr(i, "fixturenames", ()) for i in session.items)
    selected = binaries.kubernetes_version()
    kubernetes = {binaries.kubernetes_component(selected)}
    if _node_selected:
        kubernetes.add(binaries.kubernetes_component(selected, "kube-proxy"))  # routes Services on the node
    if any(i.get_closest_marker(OLDEST_MARKER) for i in session.items):
        kubernetes.add(binaries.kubernetes_component(binaries.oldest_kubernetes_version()))
    try:
        binaries.ensure("etcd", *sorted(kubernetes), "kubectl")
        if any("registry" in getattr(i, "fixturenames", ()) for i in session.items):
            binaries.ensure("registry", "crane")  # tests/e2e/test_registry_pull.py
    except binaries.BinaryError as exc:
        _binaries_error = exc  # reported by the control_plane fixture, on the tests that need it
    # The node's packages (scripts/setup-node.sh) and images (scripts/build-images.sh, cached by their inputs under
    # ~/.cache/glrt-operator/images) likewise, once, before any test that runs pods; the node fixture reports
    # a machine that cannot run a node.
    if _node_selected and unavailable_reason() is None:
        started = time.monotonic()
        with contextlib.suppress(NodeError):  # build_images() fails again, with its message, in the node fixture
            _node_images = build_images()
        _node_seconds["images built or found cached"] = time.monotonic() - started


def pytest_sessionfinish(session: pytest.Session) -> None:
    while _control_planes:
        _control_planes.popitem()[1].stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for version, seconds in _startup_seconds:
        terminalreporter.write_line(
            f"control plane (etcd + kube-apiserver + controller-manager {version}) started in {seconds:.1f}s"
        )
    for what, seconds in _node_seconds.items():
        terminalreporter.write_line(f"node: {what} in {seconds:.1f}s")


def _control_plane_for(version: str) -> ControlPlane:
    if _binaries_error is not None:
        raise _binaries_error
    if version not in _control_planes:
        # The serving certificate also names the node's bridge gateway: pods reach the apiserver there. When node
        # tests were selected, the apiserver also advertises it, so the kubernetes Service routes pods to it
        # (kube-proxy): only the selected version's, which the node uses.
        gateway = node_gateway(NodeOptions())
        advertise = gateway if _node_selected and version == binaries.kubernetes_version() else None
        cp = ControlPlane(extra_ips=[gateway], advertise_address=advertise, kubernetes_version=version)
        cp.start()
        _control_planes[version] = cp
        _startup_seconds.append((version, cp.startup_seconds or 0.0))
    return _control_planes[version]


@pytest.fixture(scope="session")
def kubernetes_version(request: pytest.FixtureRequest) -> str:
    """The Kubernetes version of this test's control plane: $GLRT_KUBERNETES_VERSION's, or the oldest minor for the
    second run of an ``oldest_kubernetes`` test."""
    return getattr(request, "param", None) or binaries.kubernetes_version()


@pytest.fixture(scope="session")
def control_plane(kubernetes_version: str) -> ControlPlane:
    return _control_plane_for(kubernetes_version)


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    """A real node (containerd + kubelet + scheduler) for tests whose subject is a pod; started on first use.
    Its control plane is the selected version's, taken outside the `control_plane` fixture: an ``oldest_kubernetes``
    test switching that fixture to the oldest minor must not stop the node."""
    # registry_hosts: tests/e2e/test_registry_pull.py adds its registry to containerd while the node runs; without
    # a hosts.toml for a registry, containerd resolves it as it does without the option.
    n = Node(_control_plane_for(binaries.kubernetes_version()), NodeOptions(registry_hosts=True))
    n.start(_node_images)
    _node_seconds["started (containerd, images imported, kubelet Ready)"] = n.startup_seconds or 0.0
    try:
        yield n
    finally:
        n.stop()
        phases = ", ".join(f"{phase} {seconds:.1f}s" for phase, seconds in n.teardown_phases.items())
        _node_seconds[f"torn down ({phases})"] = n.teardown_seconds or 0.0


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    """Admin (system:masters) ApiClient."""
    with control_plane.api_client() as api:
        yield api


@pytest.fixture
def namespace(request: pytest.FixtureRequest, kube: client.ApiClient) -> Iterator[str]:
    """A fresh namespace named after the test; deleted afterwards without waiting for it to go away."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:50].rstrip("-")
    name = f"{stem}-{secrets.token_hex(3)}"
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"glrt.dev/test": "true"})))
    yield name
    try:
        core.delete_namespace(name, propagation_policy="Background")
    except client.ApiException as exc:
        if exc.status != 404:  # the test may have deleted it itself
            raise


@pytest.fixture(scope="session")
def crd_installed(control_plane: ControlPlane) -> list[str]:
    """Server-side applies every CRD in crds/ and waits until each is Established; returns their names."""
    return control_plane.install_crds(CRD_DIR)
