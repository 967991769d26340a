"""Services on the test node, as in a real cluster: kube-proxy (nftables mode) routes ClusterIPs for pods of any
namespace, the kubernetes Service included, with no DNS (in-cluster configuration reads KUBERNETES_SERVICE_HOST, an
IP address)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from kubernetes import client

from tests.harness.node import Node, image_names
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster


def pod(name: str, script: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "c",
                    "image": image_names()["job"],
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", script],
                }
            ],
        },
    }


def test_a_pod_reaches_a_service_of_another_namespace_and_the_kubernetes_service(
    kube: client.ApiClient, node: Node
) -> None:
    core = client.CoreV1Api(kube)
    suffix = secrets.token_hex(3)
    server_ns, client_ns = f"svc-server-{suffix}", f"svc-client-{suffix}"
    for ns in (server_ns, client_ns):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    try:
        marker = f"served-{suffix}"
        core.create_namespaced_pod(
            server_ns,
            pod(
                "web",
                f"mkdir -p /tmp/w && echo {marker} > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w",
                {"app": "web"},
            ),
        )
        service = core.create_namespaced_service(
            server_ns,
            {
                "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
            },
        )
        cluster_ip = service.spec.cluster_ip
        wait_for(
            lambda: core.read_namespaced_pod("web", server_ns).status.phase == "Running",
            timeout=60,
            message="the web pod Running",
        )
        # Until kube-proxy has the endpoint, the ClusterIP refuses: retry for a while inside the pod.
        probe = (
            "for i in $(seq 30); do"
            f" printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {cluster_ip} 80 && break; sleep 1;"
            " done;"
            ' nc -w 2 "$KUBERNETES_SERVICE_HOST" "$KUBERNETES_SERVICE_PORT" </dev/null'
            ' && echo "kubernetes service reached"'
        )
        core.create_namespaced_pod(client_ns, pod("probe", probe))
        try:
            wait_for(
                lambda: core.read_namespaced_pod("probe", client_ns).status.phase in ("Succeeded", "Failed"),
                timeout=90,
                message="the probe pod done",
            )
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{node.describe(client_ns)}\n{node.describe(server_ns)}") from None
        logs = core.read_namespaced_pod_log("probe", client_ns)
        assert marker in logs and "kubernetes service reached" in logs, logs
    finally:
        for ns in (server_ns, client_ns):
            core.delete_namespace(ns)
