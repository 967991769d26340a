"""The chart's default on a real node: two operator pods, both Ready (a standby answers the probes), one holding
the Lease; deleting the leader's pod (a node drain, a rolling update) hands the Lease to the other at once, and the
new leader acts: a Runner created after the handover becomes Ready. GitLab ends with one runner per Runner."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.e2e.conftest import PAT, Runners
from tests.e2e.test_helm_chart import CHART, TEST_SETTINGS
from tests.e2e.test_pods import gitlab, stand_in  # noqa: F401 -- fixture
from tests.e2e.test_user_path import wait_pods
from tests.fake_gitlab import FakeGitLab
from tests.harness.controlplane import ControlPlane
from tests.harness.node import Node
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster


@pytest.mark.timeout(600)
def test_two_operator_pods_one_leader_handover_on_pod_deletion(
    control_plane: ControlPlane,
    kube: client.ApiClient,
    node: Node,
    gitlab: FakeGitLab,  # noqa: F811 -- the fixture on the node's gateway
    crd_installed: list[str],
    tmp_path: Path,
) -> None:
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    leases = client.CoordinationV1Api(kube)
    suffix = secrets.token_hex(3)
    system_ns, ci_ns = f"glrt-ha-{suffix}", f"ci-ha-{suffix}"
    for ns in (system_ns, ci_ns):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    values = {
        "image": {"repository": "localhost/glrt-operator", "tag": "test", "pullPolicy": "Never"},
        "watch": {"namespaces": [ci_ns]},
        "settings": TEST_SETTINGS,
        "crds": {"install": False},  # the session's CRDs are not this release's
    }  # replicaCount: the chart's default, 2
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    control_plane.helm(
        "install", "glrt", str(CHART), "--namespace", system_ns, "--values", str(tmp_path / "values.yaml")
    )

    def holder() -> str | None:
        try:
            lease = leases.read_namespaced_lease("glrt-glrt-operator-leader", system_ns)
        except client.ApiException:
            return None
        identity: str | None = lease.spec.holder_identity
        return identity

    try:
        wait_pods(
            node,
            system_ns,
            lambda: (d := apps.list_namespaced_deployment(system_ns).items) and (d[0].status.ready_replicas or 0) == 2,
            "both operator pods Ready (the standby answers the probes too)",
        )
        pods = {p.metadata.name for p in core.list_namespaced_pod(system_ns).items}
        leader = wait_for(lambda: holder() in pods and holder(), timeout=30, message="a leader among the pods")
        assert apps.list_namespaced_deployment(system_ns).items[0].spec.strategy.type == "RollingUpdate"
        (budget,) = client.PolicyV1Api(kube).list_namespaced_pod_disruption_budget(system_ns).items
        assert budget.spec.max_unavailable == 1

        runners = Runners(kube, ci_ns, gitlab.url)
        runners.put_secret("gitlab-api", {"token": PAT})
        runners.create(runners.manifest(**stand_in(1)))
        first = runners.wait_ready(timeout=120)["status"]["runnerId"]

        # The leader's pod goes (SIGTERM): it releases the Lease, the other replica takes it at once.
        deleted = time.monotonic()
        core.delete_namespaced_pod(leader, system_ns)
        (standby,) = pods - {leader}
        wait_for(lambda: holder() == standby, timeout=30, interval=0.2, message="the standby to take the Lease")
        print(
            f"\nhandover: the standby holds the Lease {time.monotonic() - deleted:.1f} s after the leader's pod"
            " was deleted"
        )

        runners.create(runners.manifest("deploys", **stand_in(1)))
        second = runners.wait_ready("deploys", timeout=120)["status"]["runnerId"]
        assert second != first and sorted(gitlab.runner_ids()) == sorted([first, second])
        assert runners.wait_ready()["status"]["runnerId"] == first  # the first, adopted as it was
        assert not [c for c in gitlab.calls if c.method == "POST" and c.path.endswith("/reset_authentication_token")]
        for name in ("builds", "deploys"):
            runners.delete(name)
        wait_for(lambda: not gitlab.runner_ids(), timeout=60, message="both runners deleted in GitLab")
    finally:
        control_plane.helm("uninstall", "glrt", "--namespace", system_ns, "--wait", check=False)
