"""Top-level fixtures: one real control plane per test session, an admin client, a namespace per test."""

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
_startup_seconds: list[float] = []
_node_images: dict[str, Path] | None = None
_node_seconds: dict[str, float] = {}
_node_selected = False


def pytest_collection_finish(session: pytest.Session) -> None:
    # A cold build of the binaries takes many minutes; doing it here, before any test runs, keeps it out of
    # the per-test timeout (pytest-timeout counts fixture setup). Only when cluster tests were selected.
    global _binaries_error  # noqa: PLW0603
    if session.config.option.collectonly or not any(i.get_closest_marker("cluster") for i in session.items):
        return
    global _node_images, _node_selected  # noqa: PLW0603
    _node_selected = any("node" in getattr(i, "fixturenames", ()) for i in session.items)
    try:
        binaries.ensure("etcd", "kubernetes", "kubectl", *(("kube-proxy",) if _node_selected else ()))
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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for seconds in _startup_seconds:
        terminalreporter.write_line(
            f"control plane (etcd + kube-apiserver + controller-manager) started in {seconds:.1f}s"
        )
    for what, seconds in _node_seconds.items():
        terminalreporter.write_line(f"node: {what} in {seconds:.1f}s")


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    if _binaries_error is not None:
        raise _binaries_error
    # The serving certificate also names the node's bridge gateway: pods reach the apiserver there. When node tests
    # were selected, the apiserver also advertises it, so the kubernetes Service routes pods to it (kube-proxy).
    gateway = node_gateway(NodeOptions())
    cp = ControlPlane(extra_ips=[gateway], advertise_address=gateway if _node_selected else None)
    cp.start()
    _startup_seconds.append(cp.startup_seconds or 0.0)
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def node(control_plane: ControlPlane) -> Iterator[Node]:
    """A real node (containerd + kubelet + scheduler) for tests whose subject is a pod; started on first use."""
    # registry_hosts: tests/e2e/test_registry_pull.py adds its registry to containerd while the node runs; without
    # a hosts.toml for a registry, containerd resolves it as it does without the option.
    n = Node(control_plane, NodeOptions(registry_hosts=True))
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
