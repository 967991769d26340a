"""Top-level fixtures: one real control plane per test session, an admin client, a namespace per test."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.harness import binaries
from tests.harness.controlplane import ControlPlane
from tests.harness.node import Node, NodeOptions, node_gateway

REPO_ROOT = Path(__file__).resolve().parents[1]
CRD_DIR = REPO_ROOT / "crds"

_binaries_error: binaries.BinaryError | None = None
_startup_seconds: list[float] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    # A cold build of the binaries takes many minutes; doing it here, before any test runs, keeps it out of
    # the per-test timeout (pytest-timeout counts fixture setup). Only when cluster tests were selected.
    global _binaries_error  # noqa: PLW0603
    if session.config.option.collectonly or not any(i.get_closest_marker("cluster") for i in session.items):
        return
    try:
        binaries.ensure("etcd", "kubernetes", "kubectl")
    except binaries.BinaryError as exc:
        _binaries_error = exc  # reported by the control_plane fixture, on the tests that need it


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for seconds in _startup_seconds:
        terminalreporter.write_line(
            f"control plane (etcd + kube-apiserver + controller-manager) started in {seconds:.1f}s"
        )


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    if _binaries_error is not None:
        raise _binaries_error
    # The serving certificate also names the node's bridge gateway: pods reach the apiserver there.
    cp = ControlPlane(extra_ips=[node_gateway(NodeOptions())])
    cp.start()
    _startup_seconds.append(cp.startup_seconds or 0.0)
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def node(control_plane: ControlPlane) -> Iterator[Node]:
    """A real node (containerd + kubelet + scheduler) for tests whose subject is a pod; started on first use."""
    n = Node(control_plane)
    n.start()
    try:
        yield n
    finally:
        n.stop()


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
    files = sorted(p for p in CRD_DIR.iterdir() if p.suffix in (".yaml", ".yml"))
    names = []
    for path in files:
        control_plane.kubectl("apply", "--server-side", "--field-manager=glrt-tests", "-f", str(path))
        with path.open() as f:
            names += [
                doc["metadata"]["name"]
                for doc in yaml.safe_load_all(f)
                if doc and doc.get("kind") == "CustomResourceDefinition"
            ]
    if names:
        control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in names))
    return names
