"""Runner manager pods on a real node: what the pod spec promises, observed inside running pods.

The pods run the runner stand-in (tests/runner_standin), which polls the fake GitLab on the node's bridge
gateway with the token from config.toml and the system_id from `.runner_system_id`, as gitlab-runner does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.e2e.conftest import GROUP_ID, PAT, PROJECT_ID, Runners
from tests.fake_gitlab import FakeGitLab
from tests.harness.controlplane import ControlPlane
from tests.harness.node import Node, image_names
from tests.harness.operator import OperatorProcess
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture
def gitlab(node: Node) -> Iterator[FakeGitLab]:
    """The fake GitLab on the address pods reach (overrides the loopback one of tests/e2e/conftest.py)."""
    with FakeGitLab().running(host=node.gateway) as gl:
        owner = gl.add_user("platform")
        gl.add_group(GROUP_ID, "platform", owners=[owner])
        gl.add_project(PROJECT_ID, "builds", group_id=GROUP_ID, maintainers=[owner])
        gl.add_access_token(PAT, owner, scopes=["create_runner", "manage_runner", "read_api"])
        yield gl


def stand_in(replicas: int) -> dict[str, object]:
    """Spec fields for manager pods running the locally built stand-in image."""
    return {
        "replicas": replicas,
        "manager": {"image": image_names()["runner"], "imagePullPolicy": "Never"},
        "config": {"checkInterval": 1},
    }


def ready_replicas(runners: Runners, name: str = "builds") -> int:
    sts = runners.apps.read_namespaced_stateful_set(name, runners.namespace)
    return int(sts.status.ready_replicas or 0)


def polling_managers(gitlab: FakeGitLab, runner_id: int) -> set[str]:
    """system_ids GitLab has heard from through `POST /jobs/request` (a manager that contacted it)."""
    return {sid for sid, m in gitlab.runners[runner_id].managers.items() if m.contacted_at is not None}


def sh(cp: ControlPlane, namespace: str, pod: str, script: str) -> tuple[int, str]:
    result = cp.kubectl("exec", "-n", namespace, pod, "-c", "runner", "--", "/bin/sh", "-c", script, check=False)
    return result.returncode, (result.stdout + result.stderr).strip()


def test_a_manager_pod_runs_as_the_spec_says_and_polls_with_its_system_id(
    control_plane: ControlPlane, runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    runners.create(runners.manifest(**stand_in(2)))
    status = runners.wait_ready()["status"]
    runner_id = int(status["runnerId"])
    wait_for(lambda: ready_replicas(runners) == 2, timeout=120, message="2 manager pods Ready")
    ids = {r["ordinal"]: r["systemId"] for r in status["replicas"]}
    ns = runners.namespace

    assert sh(control_plane, ns, "builds-0", "id -u") == (0, "100")
    code, out = sh(control_plane, ns, "builds-0", "touch /probe")
    assert code != 0 and "Read-only file system" in out
    assert sh(control_plane, ns, "builds-0", "readlink /etc/gitlab-runner/config.toml") == (
        0,
        "/secrets/config.toml",
    )
    for ordinal in (0, 1):
        assert sh(control_plane, ns, f"builds-{ordinal}", "cat /etc/gitlab-runner/.runner_system_id") == (
            0,
            ids[ordinal],
        )
    files = runners.secret_data("builds-runner-config")
    assert {o: files[f"system-id-{o}"].strip() for o in (0, 1)} == ids
    wait_for(lambda: polling_managers(gitlab, runner_id) == set(ids.values()), timeout=60, message="2 managers poll")

    # A deleted pod comes back with the same identity: no new manager in GitLab.
    before = set(gitlab.runners[runner_id].managers)
    uid = runners.core.read_namespaced_pod("builds-0", ns).metadata.uid
    runners.core.delete_namespaced_pod("builds-0", ns, grace_period_seconds=0)

    def replaced() -> bool:
        try:
            pod = runners.core.read_namespaced_pod("builds-0", ns)
        except client.ApiException:
            return False
        return bool(pod.metadata.uid != uid and ready_replicas(runners) == 2)

    wait_for(replaced, timeout=120, message="builds-0 replaced and Ready")
    assert sh(control_plane, ns, "builds-0", "cat /etc/gitlab-runner/.runner_system_id") == (0, ids[0])
    seen = len(gitlab.calls)
    wait_for(
        lambda: any(c.path.endswith("/jobs/request") for c in gitlab.calls[seen:]),
        timeout=30,
        message="the new pod polls",
    )
    assert set(gitlab.runners[runner_id].managers) == before


def test_scaling_three_to_one_leaves_one_manager(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    runners.create(runners.manifest(**stand_in(3)))
    runner_id = int(runners.wait_ready()["status"]["runnerId"])
    wait_for(lambda: len(polling_managers(gitlab, runner_id)) == 3, timeout=120, message="3 managers poll")

    runners.patch_spec(replicas=1)
    wait_for(lambda: ready_replicas(runners) == 1, timeout=120, message="1 pod left")
    only = runners.wait_ready()["status"]["replicas"]
    wait_for(
        lambda: set(gitlab.runners[runner_id].managers) == {only[0]["systemId"]},
        timeout=120,
        message="one manager left in GitLab",
    )
