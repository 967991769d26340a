"""The operator's connection to the Kubernetes API server (the one Kopf's own watching and patching does not use)."""

from __future__ import annotations

import kubernetes


def load_api_client(connections: int = 0) -> kubernetes.client.ApiClient:
    """The in-cluster service account, else the current kubeconfig (the same rule Kopf uses), keeping open as many
    connections as `connections` threads call it with at once (at least the client's default, five per core)."""
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = kubernetes.client.Configuration.get_default_copy()
    # urllib3 keeps at most this many: under load the rest are closed after each request, and the next one opens
    # (and TLS-handshakes) a new connection, work the API server pays for too.
    configuration.connection_pool_maxsize = max(connections, configuration.connection_pool_maxsize)
    return kubernetes.client.ApiClient(configuration)
