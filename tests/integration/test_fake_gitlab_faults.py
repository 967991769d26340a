"""Fault injection, the control API under /-/fake/, and the command line of the fake GitLab."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import httpx
import pytest

from tests.fake_gitlab import Fault

from .conftest import TLS_CONTEXT, WORLD_START, World

REPO_ROOT = Path(__file__).resolve().parents[2]
CREATE = {"runner_type": "instance_type"}
CREATE_PATH = r"^/api/v4/user/runners$"


def create(world: World, **kwargs: Any) -> httpx.Response:
    return world.client("glpat-admin", **kwargs).post("/user/runners", json=CREATE)


# ------------------------------------------------------------------ fault kinds
def test_status_fault_with_count(world: World) -> None:
    fault = world.gl.faults.add(Fault(method="POST", path=CREATE_PATH, kind="status", status=503, count=2))
    client = world.client("glpat-admin")
    for _ in range(2):
        response = client.post("/user/runners", json=CREATE)
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"message": "503 Service Unavailable"}
        assert "Retry-After" not in response.headers
    assert world.gl.runners == {}
    assert client.post("/user/runners", json=CREATE).status_code == 201
    assert (fault.hits, fault.exhausted) == (2, True)
    assert [(c.status, c.fault) for c in world.gl.calls] == [(503, "status"), (503, "status"), (201, None)]


def test_fault_matching_method_path_skip_and_order(world: World) -> None:
    gl = world.gl
    gl.faults.add(Fault(method="POST", path=CREATE_PATH, kind="status", status=500, skip=1, count=1))
    gl.faults.add(Fault(path=r"/user/runners", kind="status", status=502, message="bad gateway", count=1))
    client = world.client("glpat-admin")
    assert client.get("/runners/all").status_code == 200  # neither rule matches
    first = client.post("/user/runners", json=CREATE)  # rule 1 skips it, rule 2 fires
    assert (first.status_code, first.json()) == (502, {"message": "bad gateway"})
    second = client.post("/user/runners", json=CREATE)  # rule 1 fires now
    assert (second.status_code, second.json()) == (500, {"message": "500 Internal Server Error"})
    gl.faults.add(Fault(method="POST", kind="status", status=503, retry_after=5, count=1))
    assert client.post("/user/runners", json=CREATE).headers["Retry-After"] == "5"
    assert client.post("/user/runners", json=CREATE).status_code == 201
    assert len(gl.runners) == 1


def test_latency_fault(world: World) -> None:
    world.gl.faults.add(Fault(path=CREATE_PATH, kind="latency", seconds=0.2, count=1))
    started = time.monotonic()
    response = create(world)
    assert time.monotonic() - started >= 0.2
    assert response.status_code == 201
    assert len(world.gl.runners) == 1
    assert world.gl.calls[-1].fault == "latency"


def test_rate_limit_rack(world: World) -> None:
    world.gl.faults.add(Fault(path=CREATE_PATH, kind="rate_limit_rack", retry_after=7, count=1))
    before = time.time()
    response = create(world)
    assert response.status_code == 429
    assert response.headers["content-type"] == "text/plain"
    assert response.text == "Retry later\n"
    assert response.headers["Retry-After"] == "7"
    assert response.headers["RateLimit-Name"] == "throttle_authenticated_api"
    assert response.headers["RateLimit-Remaining"] == "0"
    assert response.headers["RateLimit-Limit"] and response.headers["RateLimit-Observed"]
    reset = int(response.headers["RateLimit-Reset"])
    assert before + 6 <= reset <= time.time() + 8
    assert parsedate_to_datetime(response.headers["RateLimit-ResetTime"]).timestamp() == reset
    assert world.gl.runners == {}
    assert create(world).status_code == 201


def test_rate_limit_app(world: World) -> None:
    world.gl.faults.add(Fault(path=r"^/api/v4/jobs/request$", kind="rate_limit_app", retry_after=3, count=1))
    token = world.create_runner()["token"]
    response = world.client(None).post("/jobs/request", json={"token": token})
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/json"
    assert response.headers["Retry-After"] == "3"
    assert "requested too many times" in response.json()["message"]
    assert world.gl.runners[1].contacted_at is None  # not processed
    assert world.client(None).post("/jobs/request", json={"token": token}).status_code == 204
    world.gl.faults.add(Fault(kind="rate_limit_app", count=1))
    assert world.client(None).post("/jobs/request", json={"token": token}).headers["Retry-After"] == "60"


def test_503_on_jobs_request_is_not_processed(world: World) -> None:
    token = world.create_runner()["token"]
    world.gl.faults.add(Fault(method="POST", path="/jobs/request", kind="status", status=503))
    for _ in range(3):
        assert world.client(None).post("/jobs/request", json={"token": token}).status_code == 503
    runner = world.gl.runners[1]
    assert (runner.contacted_at, runner.managers, runner.creation_state) == (None, {}, "started")


def test_drop_fault(world: World) -> None:
    world.gl.faults.add(Fault(method="POST", path=CREATE_PATH, kind="drop", count=1))
    client = world.client("glpat-admin")
    with pytest.raises(httpx.TransportError):
        client.post("/user/runners", json=CREATE)
    assert world.gl.runners == {}
    assert (world.gl.calls[-1].status, world.gl.calls[-1].fault) == (0, "drop")
    assert client.post("/user/runners", json=CREATE).status_code == 201  # the same client recovers


def test_drop_after_commit_fault(world: World) -> None:
    world.gl.faults.add(Fault(method="POST", path=CREATE_PATH, kind="drop_after_commit", count=1))
    with pytest.raises(httpx.TransportError):
        create(world)
    runners = list(world.gl.runners.values())
    assert len(runners) == 1  # GitLab created it; the client never saw the token
    assert (world.gl.calls[-1].status, world.gl.calls[-1].fault) == (201, "drop_after_commit")


@pytest.mark.parametrize(
    ("garble", "status", "content_type", "token"),
    [
        ("html", 200, "text/html", None),
        ("empty", 200, "application/json", None),
        ("text", 200, "text/plain", None),
        ("see-other", 303, "text/html", None),
        ("token-null", 201, "application/json", {"token": None}),
        ("token-empty", 201, "application/json", {"token": ""}),
        ("token-number", 201, "application/json", {"token": 1234567}),
        ("token-shape", 201, "application/json", {"token": "ok-0123456789abcdef"}),
        ("no-token", 201, "application/json", {}),
    ],
)
def test_garble_after_commit_fault(
    world: World, garble: str, status: int, content_type: str, token: dict[str, Any] | None
) -> None:
    world.gl.faults.add(Fault(method="POST", path=CREATE_PATH, kind="garble_after_commit", garble=garble, count=1))
    response = create(world)
    (runner,) = world.gl.runners.values()  # GitLab created it; the answer does not say so readably
    assert (response.status_code, response.headers.get("content-type")) == (status, content_type)
    if token is not None:
        body = response.json()
        assert body["id"] == runner.id and {k: v for k, v in body.items() if k == "token"} == token
    assert (world.gl.calls[-1].status, world.gl.calls[-1].fault) == (201, "garble_after_commit")
    assert create(world).status_code == 201 and len(world.gl.runners) == 2  # used up


def test_garble_after_commit_leaves_a_refusal_alone(world: World) -> None:
    world.gl.faults.add(Fault(method="POST", path=CREATE_PATH, kind="garble_after_commit", count=1))
    response = world.client("glpat-admin").post("/user/runners", json={"runner_type": "bogus"})
    assert response.status_code == 400 and world.gl.runners == {}
    with pytest.raises(ValueError, match="unknown garble"):
        Fault(kind="garble_after_commit", garble="nonsense")


def test_hold_after_commit_fault(world: World) -> None:
    world.gl.faults.add(Fault(method="POST", path=CREATE_PATH, kind="hold_after_commit", seconds=0.5, count=1))
    with pytest.raises(httpx.ReadTimeout):
        world.client("glpat-admin", timeout=0.1).post("/user/runners", json=CREATE)
    assert len(world.gl.runners) == 1  # committed before the client gave up
    world.gl.faults.add(Fault(method="POST", path=CREATE_PATH, kind="hold_after_commit", seconds=0.2, count=1))
    started = time.monotonic()
    response = create(world)
    assert response.status_code == 201
    assert time.monotonic() - started >= 0.2
    assert len(world.gl.runners) == 2


def test_hold_before_commit_fault_never_commits_for_a_client_that_left(world: World) -> None:
    held = world.gl.faults.add(Fault(method="POST", path=CREATE_PATH, kind="hold_before_commit", seconds=1.0, count=1))
    with pytest.raises(httpx.ReadTimeout):
        world.client("glpat-admin", timeout=0.2).post("/user/runners", json=CREATE)
    assert held.hits == 1
    time.sleep(1.2)  # past the hold: had it been processed, the runner would exist by now
    assert len(world.gl.runners) == 0
    world.gl.faults.add(Fault(method="POST", path=CREATE_PATH, kind="hold_before_commit", seconds=0.3, count=1))
    started = time.monotonic()
    assert create(world).status_code == 201  # a client that waits is answered after the hold
    assert time.monotonic() - started >= 0.3 and len(world.gl.runners) == 1


def test_faults_never_touch_the_control_api(world: World) -> None:
    world.gl.faults.add(Fault(kind="drop"))
    assert world.client(None).get(world.gl.url + "/-/fake/state").status_code == 200
    with pytest.raises(httpx.TransportError):
        create(world)


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault(kind="explode")
    with pytest.raises(ValueError, match="unknown fault fields"):
        Fault.from_dict({"kind": "status", "colour": "red"})


# ------------------------------------------------------------------ control API
def control(world: World) -> httpx.Client:
    return world.client(None, base_url=world.gl.url + "/-/fake")


def test_control_faults(world: World) -> None:
    ctl = control(world)
    added = ctl.post("/faults", json={"method": "POST", "path": CREATE_PATH, "kind": "status", "status": 500})
    assert added.status_code == 201
    assert added.json()["kind"] == "status"
    assert create(world).status_code == 500
    assert ctl.get("/faults").json()[0]["hits"] == 1
    assert ctl.post("/faults", json={"kind": "nope"}).status_code == 400
    assert ctl.delete("/faults").status_code == 204
    assert ctl.get("/faults").json() == []
    assert create(world).status_code == 201
    rack = ctl.post("/faults", json={"kind": "rate_limit_rack", "retry_after": 2, "count": 1})
    assert rack.status_code == 201
    assert create(world).headers["Retry-After"] == "2"


def test_control_state_masks_tokens(world: World) -> None:
    created = world.create_runner(description="masked")
    world.client(None).post("/runners/verify", json={"token": created["token"], "system_id": "s_abc"})
    response = control(world).get("/state")
    assert response.status_code == 200
    assert created["token"] not in response.text
    assert "glpat-" not in response.text
    state = response.json()
    runner = state["runners"][0]
    assert runner["token"] == "glrt-\u2026" + created["token"][-4:]
    assert (runner["id"], runner["description"], runner["status"]) == (created["id"], "masked", "online")
    assert runner["managers"][0]["system_id"] == "s_abc"
    assert state["now"] == "2025-05-03T09:00:00.000Z"


def test_control_calls_clock_expire_revoke(world: World) -> None:
    created = world.create_runner()
    token = created["token"]
    world.client(None).post("/runners/verify", json={"token": token})
    ctl = control(world)
    calls = ctl.get("/calls").json()
    assert [(c["method"], c["path"], c["status"]) for c in calls] == [
        ("POST", "/api/v4/user/runners", 201),
        ("POST", "/api/v4/runners/verify", 200),
    ]
    assert token not in ctl.get("/calls").text
    assert len(ctl.get("/calls", params={"since": 1}).json()) == 1

    clock = ctl.post("/clock", json={"advance": 3 * 3600})
    assert clock.json()["now"] == "2025-05-03T12:00:00.000Z"
    assert world.client("glpat-admin").get(f"/runners/{created['id']}").json()["status"] == "offline"

    assert ctl.post(f"/expire/{created['id']}").json()["token_expired"] is True
    assert world.client(None).post("/runners/verify", json={"token": token}).status_code == 403
    assert ctl.post("/expire/999").status_code == 404

    other = world.create_runner()["token"]
    assert ctl.post("/revoke/2").status_code == 200
    assert world.client(None).post("/runners/verify", json={"token": other}).status_code == 403
    assert other in world.gl.revoked_tokens


def test_control_settings_jobs_and_reset(world: World) -> None:
    ctl = control(world)
    settings = ctl.put("/settings", json={"runner_token_expiration_interval": 7200})
    assert settings.json()["runner_token_expiration_interval"] == 7200
    assert ctl.put("/settings", json={"bogus": 1}).status_code == 400
    created = world.create_runner()
    assert created["token_expires_at"] == "2025-05-03T11:00:00.000Z"
    assert ctl.get("/settings").json() == {
        "runner_token_expiration_interval": 7200,
        "group_runner_token_expiration_interval": None,
        "project_runner_token_expiration_interval": None,
        "deploy_token_lifetime_seconds": None,
        "require_personal_access_token_expiry": True,
        "deploy_token_expiry_mode": "instant",
        "host_utc_offset_minutes": 0,
    }
    legacy = ctl.put("/settings", json={"deploy_token_expiry_mode": "legacy", "host_utc_offset_minutes": 600})
    assert (legacy.json()["deploy_token_expiry_mode"], legacy.json()["host_utc_offset_minutes"]) == ("legacy", 600)
    assert ctl.put("/settings", json={"deploy_token_expiry_mode": "sometimes"}).status_code == 400
    ctl.put("/settings", json={"deploy_token_expiry_mode": "instant", "host_utc_offset_minutes": 0})
    job = ctl.post("/jobs", json={"payload": {"steps": []}})
    assert job.status_code == 201
    polled = world.client(None).post("/jobs/request", json={"token": created["token"]})
    assert (polled.status_code, polled.json()["id"], polled.json()["steps"]) == (201, job.json()["id"], [])

    world.gl.faults.add(Fault(kind="latency", seconds=0))
    assert ctl.post("/reset").status_code == 204
    assert world.gl.runners == {} and world.gl.calls == [] and world.gl.faults.rules == []
    assert world.client(None).post("/runners/verify", json={"token": created["token"]}).status_code == 403
    assert created["token"] in world.gl.revoked_tokens
    assert create(world).status_code == 201  # users and tokens survive a reset
    assert ctl.get("/nothing").status_code == 404


def test_control_edit_and_delete_runner(world: World) -> None:
    created = world.create_runner("glpat-owner", runner_type="group_type", group_id=10, tag_list=["a"])
    ctl = control(world)
    edited = ctl.patch(f"/runners/{created['id']}", json={"description": "changed in the UI", "locked": True})
    assert edited.status_code == 200
    assert (edited.json()["description"], edited.json()["locked"]) == ("changed in the UI", True)
    seen = world.client("glpat-owner").get(f"/runners/{created['id']}").json()
    assert (seen["description"], seen["locked"]) == ("changed in the UI", True)
    assert ctl.patch(f"/runners/{created['id']}", json={"token": "x"}).status_code == 400
    assert ctl.delete(f"/runners/{created['id']}").status_code == 204
    assert world.gl.runners == {}
    assert created["token"] in world.gl.revoked_tokens
    assert ctl.delete(f"/runners/{created['id']}").status_code == 404


def test_control_clock_set_and_freeze(world: World) -> None:
    ctl = control(world)
    target = WORLD_START + timedelta(days=1)
    assert ctl.post("/clock", json={"set": "2025-05-04T09:00:00Z"}).json() == {
        "now": "2025-05-04T09:00:00.000Z",
        "frozen": True,
    }
    assert world.gl.clock.now() == target
    assert ctl.post("/clock", json={"freeze": False}).json()["frozen"] is False
    assert world.gl.clock.now() >= target


# ------------------------------------------------------------------ command line
def _start_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_gitlab", "--port", "0", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: Queue[str] = Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=10)
    except Empty:
        proc.kill()
        raise AssertionError("the fake GitLab CLI printed nothing") from None
    match = re.fullmatch(r"fake GitLab listening on (http://127\.0\.0\.1:\d+)\n", line)
    assert match, line
    return proc, match[1]


def _stop_cli(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    return out + err


def test_cli_serves_and_exits_cleanly() -> None:
    pat = "glpat-cli-secret-value"
    proc, url = _start_cli(
        "--access-token",
        f"{pat}:create_runner,manage_runner",
        "--group",
        "7:platform",
        "--project",
        "42:web:7",
    )
    try:
        with httpx.Client(base_url=url + "/api/v4", headers={"PRIVATE-TOKEN": pat}, verify=TLS_CONTEXT) as client:
            created = client.post("/user/runners", json={"runner_type": "project_type", "project_id": 42})
            assert created.status_code == 201, created.text
            token = created.json()["token"]
            assert client.post("/user/runners", json=CREATE).status_code == 403  # demo is no admin
            state = client.get(url + "/-/fake/state").json()
            assert state["runners"][0]["project_ids"] == [42]
    finally:
        output = _stop_cli(proc)
    assert pat not in output
    assert token not in output


def test_cli_admin_flag_and_sigint() -> None:
    proc, url = _start_cli("--access-token", "glpat-cli-admin:api", "--admin")
    try:
        response = httpx.post(
            url + "/api/v4/user/runners",
            headers={"PRIVATE-TOKEN": "glpat-cli-admin"},
            json=CREATE,
            verify=TLS_CONTEXT,
        )
        assert response.status_code == 201
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_a_fault_at_a_rate_fires_for_about_that_fraction() -> None:
    from tests.fake_gitlab import FaultSet

    faults = FaultSet()
    rule = faults.add(Fault(path="/runners", rate=0.2))
    fired = sum(faults.match("GET", "/api/v4/runners/1") is not None for _ in range(2000))
    assert 300 < fired < 500 and rule.hits == fired and rule.seen == 2000
