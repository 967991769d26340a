"""The operator's API server connection (adapters.kube_client): as many connections kept open as threads call it,
so a busy operator does not reopen (and TLS-handshake) one per request."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
import yaml

from glrt_operator.adapters.kube_cache import WATCHED_KINDS, watch_count
from glrt_operator.adapters.kube_client import load_api_client


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    # The kubernetes client reads $KUBECONFIG once, at import.
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    default = kubernetes.client.Configuration.get_default_copy()
    yield
    kubernetes.client.Configuration.set_default(default)  # loading a kubeconfig replaces the process's default


def pool_size(connections: int) -> int:
    api = load_api_client(connections)
    return int(api.rest_client.pool_manager.connection_pool_kw["maxsize"])


@pytest.mark.usefixtures("kubeconfig")
def test_one_connection_per_calling_thread_at_least_the_clients_default() -> None:
    assert pool_size(45) == 45
    assert pool_size(1) == multiprocessing.cpu_count() * 5  # the kubernetes client's own default
    assert load_api_client(45).configuration.host == "https://127.0.0.1:6443"


def test_the_caches_hold_one_watch_per_kind_and_namespace() -> None:
    assert watch_count(None) == len(WATCHED_KINDS) == 5
    assert watch_count(frozenset({"team-a", "team-b"})) == 10
