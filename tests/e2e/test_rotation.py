"""Token rotation, end to end: on request, before expiry, after an out-of-band revocation, across a crash."""

from __future__ import annotations

import tomllib
from datetime import datetime

import httpx
import pytest

from glrt_operator.core.api import GROUP, VERSION
from tests.e2e.conftest import PAT, Runners, assert_same_token, reads_of
from tests.fake_gitlab import FakeGitLab, Fault
from tests.harness.operator import OperatorProcess
from tests.harness.runner_pod import EmulatedRunnerPod
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster


def resets(gitlab: FakeGitLab, runner_id: int) -> list[object]:
    return [c for c in gitlab.calls if c.path.endswith(f"/runners/{runner_id}/reset_authentication_token")]


def refused(gitlab: FakeGitLab, token: str) -> bool:
    """GitLab's own answer for a runner token (verify: 403 = refused)."""
    response = httpx.post(f"{gitlab.api_url}/runners/verify", json={"token": token})
    return response.status_code == 403


def stored_token(runners: Runners) -> str:
    return runners.secret_data("builds-runner-token")["token"]


def test_editing_requested_at_rotates_exactly_once(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    runners.create(runners.manifest(tokenRotation={"requestedAt": "2026-11-22T10:00:00Z"}))
    body = runners.wait_ready()
    runner_id = body["status"]["runnerId"]
    old = stored_token(runners)
    assert not resets(gitlab, runner_id)  # a requestedAt present at creation is satisfied by the new token
    checksum_before = runners.apps.read_namespaced_stateful_set("builds", runners.namespace).spec.template.metadata

    runners.patch_spec(tokenRotation={"requestedAt": "2026-11-22T11:00:00Z"})
    wait_for(lambda: stored_token(runners) != old, timeout=30, message="new token stored")
    status = runners.wait_ready()["status"]

    new = stored_token(runners)
    old_refused, new_refused = refused(gitlab, old), refused(gitlab, new)
    assert old_refused and not new_refused
    assert_same_token(new, gitlab.runners[runner_id].token, "token Secret vs GitLab")
    assert status["runnerId"] == runner_id
    config = tomllib.loads(runners.secret_data("builds-runner-config")["config.toml"])
    assert_same_token(config["runners"][0]["token"], new, "config.toml vs token Secret")
    assert status["rotationRequestedAt"] == "2026-11-22T11:00:00Z" and status["tokenRotatedAt"]
    wait_for(lambda: "TokenRotated" in runners.event_reasons(), timeout=10, message="the Event (posted asynchronously)")
    # Pods reload the new token from the Secret volume; the template (and so the pods) stay as they were.
    template = runners.apps.read_namespaced_stateful_set("builds", runners.namespace).spec.template.metadata
    assert template.annotations == checksum_before.annotations

    # Further reconciles (the 3 s resync) do not rotate again.
    reads = reads_of(gitlab, runner_id)
    wait_for(
        lambda: reads_of(gitlab, runner_id) >= reads + 2,
        timeout=20,
        message="two more resyncs",
    )
    assert len(resets(gitlab, runner_id)) == 1
    assert_same_token(stored_token(runners), new, "token after further reconciles")


def test_token_is_renewed_before_it_expires(runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess) -> None:
    gitlab.settings.project_runner_token_expiration_interval = 20  # seconds: GitLab's floor is 2 h, not the fake's
    runners.create(runners.manifest(tokenRotation={"renewBefore": "72h"}))
    status = runners.wait_ready()["status"]
    runner_id, first_expiry = status["runnerId"], status["tokenExpiresAt"]
    assert first_expiry is not None

    # renewBefore is capped at half the 20 s lifetime: renewed ~10 s before expiry, never in a loop.
    wait_for(lambda: runners.get()["status"].get("tokenExpiresAt") != first_expiry, timeout=30, message="renewal")
    renewed = runners.get()["status"]
    assert renewed["runnerId"] == runner_id
    assert datetime.fromisoformat(renewed["tokenExpiresAt"]) > datetime.fromisoformat(first_expiry)
    assert_same_token(stored_token(runners), gitlab.runners[runner_id].token, "renewed token")
    rotated = [e for e in runners.events() if e.reason == "TokenRotated"]
    assert rotated and "expires at" in rotated[0].message
    assert len(resets(gitlab, runner_id)) <= 2  # about one renewal per 10 s of the test, not one per reconcile


def test_revoked_token_is_detected_and_reissued(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    runners.create(runners.manifest(replicas=1))
    runner_id = runners.wait_ready()["status"]["runnerId"]
    old = stored_token(runners)

    gitlab.revoke_token(runner_id)  # someone reset it in GitLab's UI
    old_refused = refused(gitlab, old)
    assert old_refused
    wait_for(lambda: stored_token(runners) == gitlab.runners[runner_id].token, timeout=30, message="reissue")
    condition = wait_for(lambda: runners.condition(type_="TokenValid").get("reason") == "Reissued" and True, timeout=10)
    assert condition
    assert "revoked or expired outside the operator" in runners.condition(type_="TokenValid")["message"]
    wait_for(lambda: "TokenRefused" in runners.event_reasons(), timeout=10, message="the Event (posted asynchronously)")


def test_rotation_interrupted_by_a_crash_converges(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    runners.create(runners.manifest())
    runner_id = runners.wait_ready()["status"]["runnerId"]
    old = stored_token(runners)

    # GitLab resets the token, then holds the reply: the operator dies with the new token only in flight.
    gitlab.faults.add(
        Fault(method="POST", path=rf"/runners/{runner_id}/reset_authentication_token$", kind="hold_after_commit",
              seconds=30, count=1)
    )  # fmt: skip
    runners.patch_spec(tokenRotation={"requestedAt": "now"})
    wait_for(lambda: gitlab.runners[runner_id].token != old, timeout=30, message="GitLab reset the token")
    operator.kill()
    still_old, old_refused = stored_token(runners) == old, refused(gitlab, old)
    assert still_old and old_refused  # the Secret holds a dead token now
    assert runners.get()["status"].get("rotationStartedAt")

    gitlab.faults.clear()
    operator.start()
    wait_for(lambda: stored_token(runners) == gitlab.runners[runner_id].token, timeout=60, message="converged")
    status = runners.wait_ready()["status"]
    stored_refused = refused(gitlab, stored_token(runners))
    assert not stored_refused
    assert status["runnerId"] == runner_id and not status.get("rotationStartedAt")
    assert status["rotationRequestedAt"] == "now"


def test_a_stale_rotation_fence_does_not_reset_a_replacement_runner(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    """A heal that failed because the runner was deleted in GitLab meanwhile leaves `rotationStartedAt`; the runner
    created in its place has a fresh token and must keep it."""
    runners.create(runners.manifest())
    old_id = runners.wait_ready()["status"]["runnerId"]
    operator.stop()
    response = httpx.delete(f"{gitlab.api_url}/runners/{old_id}", headers={"PRIVATE-TOKEN": PAT})
    assert response.status_code == 204
    runners.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, runners.namespace, "runners", "builds",
        {"status": {"rotationStartedAt": "2026-11-22T10:00:00Z"}},
    )  # fmt: skip
    operator.start()
    new_id = wait_for(lambda: (i := runners.get()["status"].get("runnerId")) != old_id and i, timeout=30)
    reads = reads_of(gitlab, new_id)
    wait_for(
        lambda: reads_of(gitlab, new_id) >= reads + 2,
        timeout=20,
        message="two resyncs of the new runner",
    )
    assert resets(gitlab, new_id) == []
    assert not runners.get()["status"].get("rotationStartedAt")
    assert_same_token(stored_token(runners), gitlab.runners[new_id].token, "replacement runner's token")


def test_pods_poll_across_a_rotation(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess, kube: object
) -> None:
    """Emulated pods read the token from the config Secret on every poll: the refusal window they see is the
    operator's part of the blackout (reset -> Secret written). A real cluster adds the kubelet's Secret refresh."""
    runners.create(runners.manifest(replicas=2))
    runners.wait_ready()
    pods = [
        EmulatedRunnerPod(kube, runners.namespace, "builds-runner-config", i, interval=0.05).start() for i in (0, 1)
    ]  # type: ignore[arg-type]
    try:
        wait_for(lambda: all(len(p.polls) > 5 for p in pods), timeout=10)
        runners.patch_spec(tokenRotation={"requestedAt": "rotate-now"})
        wait_for(lambda: runners.get()["status"].get("rotationRequestedAt") == "rotate-now", timeout=30)
        mark = [len(p.polls) for p in pods]
        wait_for(lambda: all(len(p.polls) > m + 5 for p, m in zip(pods, mark, strict=True)), timeout=10)
    finally:
        for pod in pods:
            pod.stop()
    for pod in pods:
        assert pod.polls[-1].status == 204  # polling again with the new token
    blackout = max(p.longest_refusal() for p in pods)
    print(f"\nrotation blackout seen by emulated pods (operator's share): {blackout * 1000:.0f} ms")
    assert blackout < 5.0
