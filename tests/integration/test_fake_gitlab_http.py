"""The fake GitLab over raw HTTP (httpx): codes, bodies and headers as GitLab documents them.

Section comments cite GitLab's documentation by the short names listed in ``tests/fake_gitlab/__init__.py``.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.fake_gitlab import Clock, FakeGitLab
from tests.fake_gitlab.state import iso

from .conftest import WORLD_START, World

TOKEN_RE = re.compile(r"^glrt-t([123])_[A-Za-z0-9_-]{20}$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
RUNNER_INFO = {
    "name": "gitlab-runner",
    "version": "19.4.0",
    "revision": "a1b2c3d4",
    "platform": "linux",
    "architecture": "amd64",
    "executor": "kubernetes",
    "shell": "bash",
    "features": {"variables": True, "image": True, "trace_checksum": True, "some_future_feature": True},
    "config": {"gpus": ""},
    "labels": {"env": "prod"},
}


def runner_call(world: World, method: str, path: str, **body: Any) -> httpx.Response:
    """A runner-token request (no user credentials), JSON body like gitlab-runner sends."""
    return world.client(None).request(method, path, json=body)


# ------------------------------------------------------------------ POST /user/runners (create a runner)
def test_create_instance_runner_as_admin(world: World) -> None:
    response = world.client("glpat-admin").post(
        "/user/runners",
        json={
            "runner_type": "instance_type",
            "description": "ci",
            "tag_list": ["k8s", "linux"],
            "run_untagged": False,
            "maximum_timeout": 3600,
            "locked": True,
            "access_level": "ref_protected",
            "maintenance_note": "note",
            "some_unknown_param": 1,
        },
    )
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"id", "token", "token_expires_at"}
    match = TOKEN_RE.match(body["token"])
    assert match and match[1] == "1"
    assert body["token_expires_at"] is None
    runner = world.gl.runners[body["id"]]
    assert runner.runner_type == "instance_type"
    assert runner.creation_state == "started"
    assert (runner.description, runner.tag_list, runner.run_untagged) == ("ci", ["k8s", "linux"], False)
    assert (runner.maximum_timeout, runner.locked, runner.access_level) == (3600, True, "ref_protected")
    assert runner.maintenance_note == "note"
    assert runner.paused is False
    assert runner.contacted_at is None
    assert runner.created_at == WORLD_START
    found = world.gl.runner_by_token(body["token"])
    assert found is not None and found.id == body["id"]


def test_create_defaults(world: World) -> None:
    body = world.create_runner()
    runner = world.gl.runners[body["id"]]
    assert (runner.paused, runner.locked, runner.run_untagged) == (False, False, True)
    assert (runner.access_level, runner.maximum_timeout, runner.tag_list) == ("not_protected", None, [])


@pytest.mark.parametrize(
    ("token", "body", "partition"),
    [
        ("glpat-owner", {"runner_type": "group_type", "group_id": 10}, "2"),
        ("glpat-owner", {"runner_type": "group_type", "group_id": 11}, "2"),  # inherited ownership
        ("glpat-pmaint", {"runner_type": "project_type", "project_id": 100}, "3"),
        ("glpat-owner", {"runner_type": "project_type", "project_id": 100}, "3"),  # owner of an ancestor group
        ("glpat-gmaint", {"runner_type": "project_type", "project_id": 200}, "3"),  # inherited maintainer
        ("glpat-admin", {"runner_type": "group_type", "group_id": 11}, "2"),
    ],
)
def test_create_permitted(world: World, token: str, body: dict[str, Any], partition: str) -> None:
    created = world.create_runner(token, **body)
    match = TOKEN_RE.match(created["token"])
    assert match and match[1] == partition
    runner = world.gl.runners[created["id"]]
    if body["runner_type"] == "group_type":
        assert (runner.group_id, runner.project_ids) == (body["group_id"], [])
    else:
        assert (runner.group_id, runner.project_ids) == (None, [body["project_id"]])


@pytest.mark.parametrize(
    ("token", "body"),
    [
        ("glpat-owner", {"runner_type": "instance_type"}),
        ("glpat-gmaint", {"runner_type": "group_type", "group_id": 10}),
        ("glpat-pmaint", {"runner_type": "group_type", "group_id": 11}),
        ("glpat-dev", {"runner_type": "project_type", "project_id": 100}),
        ("glpat-outsider", {"runner_type": "project_type", "project_id": 100}),
    ],
)
def test_create_forbidden(world: World, token: str, body: dict[str, Any]) -> None:
    response = world.client(token).post("/user/runners", json=body)
    assert response.status_code == 403
    assert response.json() == {"message": "403 Forbidden - Insufficient permissions"}
    assert world.gl.runners == {}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, {"error": "runner_type is missing, runner_type does not have a valid value"}),
        ({"runner_type": "bogus"}, {"error": "runner_type does not have a valid value"}),
        ({"runner_type": "group_type"}, {"error": "group_id is missing"}),
        ({"runner_type": "project_type"}, {"error": "project_id is missing"}),
        ({"runner_type": "group_type", "group_id": 999}, {"message": "400 Bad request - Missing/invalid group"}),
        (
            {"runner_type": "project_type", "project_id": 999},
            {"message": "400 Bad request - Missing/invalid project"},
        ),
        (
            {"runner_type": "instance_type", "access_level": "all"},
            {"error": "access_level does not have a valid value"},
        ),
        ({"runner_type": "instance_type", "maximum_timeout": "soon"}, {"error": "maximum_timeout is invalid"}),
        ({"runner_type": "instance_type", "locked": "maybe"}, {"error": "locked is invalid"}),
        (
            {"runner_type": "instance_type", "run_untagged": False},
            {
                "message": "400 Bad request - Tags list can not be empty when runner is not allowed to pick "
                "untagged jobs"
            },
        ),
        (
            {"runner_type": "instance_type", "maximum_timeout": 599},
            {"message": "400 Bad request - Maximum timeout needs to be at least 10 minutes"},
        ),
        (
            {"runner_type": "instance_type", "run_untagged": False, "maximum_timeout": 60},
            {
                "message": "400 Bad request - Tags list can not be empty when runner is not allowed to pick "
                "untagged jobs and Maximum timeout needs to be at least 10 minutes"
            },
        ),
        (
            {"runner_type": "instance_type", "description": "x" * 1025},
            {"message": "400 Bad request - Description is too long (maximum is 1024 characters)"},
        ),
        (
            {"runner_type": "instance_type", "maintenance_note": "x" * 1025},
            {"message": "400 Bad request - Maintenance note is too long (maximum is 1024 characters)"},
        ),
    ],
)
def test_create_validation_errors(world: World, body: dict[str, Any], expected: dict[str, Any]) -> None:
    response = world.client("glpat-admin").post("/user/runners", json=body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == expected
    assert world.gl.runners == {}


def test_create_tag_and_length_limits(world: World) -> None:
    client = world.client("glpat-admin")
    too_many = client.post(
        "/user/runners", json={"runner_type": "instance_type", "tag_list": [f"t{i}" for i in range(51)]}
    )
    assert too_many.status_code == 400
    assert "Too many tags specified. Please limit the number of tags to 50" in too_many.json()["message"]
    fifty = world.create_runner(tag_list=[f"t{i}" for i in range(50)], description="d" * 1024)
    assert len(world.gl.runners[fifty["id"]].tag_list) == 50


# ------------------------------------------------------------------ request formats (REST API)
def test_form_body_with_csv_tags_and_string_booleans(world: World) -> None:
    response = world.client("glpat-admin").post(
        "/user/runners",
        data={
            "runner_type": "instance_type",
            "tag_list": "a, b,c",
            "run_untagged": "false",
            "locked": "true",
            "paused": "true",
            "maximum_timeout": "700",
        },
    )
    assert response.status_code == 201
    runner = world.gl.runners[response.json()["id"]]
    assert runner.tag_list == ["a", "b", "c"]
    assert (runner.run_untagged, runner.locked, runner.paused, runner.maximum_timeout) == (False, True, True, 700)


def test_form_body_with_bracket_array(world: World) -> None:
    response = world.client("glpat-admin").post(
        "/user/runners",
        content=b"runner_type=instance_type&tag_list[]=x&tag_list%5B%5D=y",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 201
    assert world.gl.runners[response.json()["id"]].tag_list == ["x", "y"]


def test_json_csv_tags_and_query_merge(world: World) -> None:
    response = world.client("glpat-admin").post(
        "/user/runners", params={"runner_type": "instance_type"}, json={"tag_list": "p,q", "paused": "true"}
    )
    assert response.status_code == 201
    runner = world.gl.runners[response.json()["id"]]
    assert (runner.tag_list, runner.paused) == (["p", "q"], True)


def test_chunked_json_body(world: World) -> None:
    response = world.client("glpat-admin").post(
        "/user/runners",
        content=iter([b'{"runner_type": "instance_type", ', b'"description": "chunked"}']),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 201
    assert world.gl.runners[response.json()["id"]].description == "chunked"


def test_malformed_json_body_is_400(world: World) -> None:
    response = world.client("glpat-admin").post(
        "/user/runners", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert world.gl.runners == {}


# ------------------------------------------------------------------ user authentication (REST authentication)
def test_missing_and_unknown_credentials_are_401(world: World) -> None:
    for client in (world.client(None), world.client("glpat-nope")):
        response = client.post("/user/runners", json={"runner_type": "instance_type"})
        assert response.status_code == 401
        assert response.json() == {"message": "401 Unauthorized"}
        assert client.get("/runners/1").status_code == 401


def test_bearer_and_query_token_accepted(world: World) -> None:
    bearer = world.client(None, headers={"Authorization": "Bearer glpat-admin"})
    assert bearer.post("/user/runners", json={"runner_type": "instance_type"}).status_code == 201
    query = world.client(None).get("/runners/all", params={"private_token": "glpat-admin"})
    assert query.status_code == 200
    assert world.gl.calls[-1].query == {"private_token": "[FILTERED]"}


def test_expired_and_revoked_tokens(world: World) -> None:
    expired = world.client("glpat-expired").get("/runners")
    assert expired.status_code == 401
    assert expired.json() == {
        "error": "invalid_token",
        "error_description": "Token is expired. You can either do re-authorization or token refresh.",
    }
    revoked = world.client("glpat-revoked").get("/runners")
    assert revoked.status_code == 401
    assert revoked.json() == {
        "error": "invalid_token",
        "error_description": "Token was revoked. You have to re-authorize from the user.",
    }


def test_token_expires_with_the_clock(world: World) -> None:
    # an expiry date: the token dies at 00:00 UTC of it, 15 h after WORLD_START
    world.gl.add_access_token("glpat-short", world.users["admin"], ["api"], expires_at=date(2025, 5, 4))
    client = world.client("glpat-short")
    world.gl.clock.advance(15 * 3600 - 1)
    assert client.get("/runners").status_code == 200
    world.gl.clock.advance(1)
    assert client.get("/runners").status_code == 401


@pytest.mark.parametrize(
    ("token", "method", "path", "status"),
    [
        ("glpat-read", "POST", "/user/runners", 403),
        ("glpat-read", "GET", "/runners/{id}", 200),
        ("glpat-read", "PUT", "/runners/{id}", 403),
        ("glpat-read", "GET", "/runners", 200),
        ("glpat-create", "POST", "/user/runners", 201),
        ("glpat-create", "GET", "/runners/{id}", 403),
        ("glpat-create", "PUT", "/runners/{id}", 403),
        ("glpat-create", "POST", "/runners/{id}/reset_authentication_token", 403),
        ("glpat-manage", "POST", "/user/runners", 403),
        ("glpat-manage", "GET", "/runners", 403),
        ("glpat-manage", "GET", "/runners/{id}", 200),
        ("glpat-manage", "GET", "/runners/{id}/managers", 200),
        ("glpat-manage", "PUT", "/runners/{id}", 200),
        ("glpat-manage", "POST", "/runners/{id}/reset_authentication_token", 201),
        ("glpat-manage", "DELETE", "/runners/{id}", 204),
        ("glpat-both", "POST", "/user/runners", 201),
        ("glpat-both", "DELETE", "/runners/{id}", 204),
        ("glpat-owner", "DELETE", "/runners/{id}", 204),
    ],
)
def test_scopes(world: World, token: str, method: str, path: str, status: int) -> None:
    runner = world.create_runner("glpat-owner", runner_type="group_type", group_id=10)
    body: dict[str, Any] | None = None
    if path == "/user/runners":
        body = {"runner_type": "group_type", "group_id": 10}
    elif method == "PUT":
        body = {"description": "changed"}
    response = world.client(token).request(method, path.format(id=runner["id"]), json=body)
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["error"] == "insufficient_scope"
        expected_scope = "api create_runner" if path == "/user/runners" else None
        if expected_scope:
            assert response.json()["scope"] == expected_scope
        assert len(world.gl.runners) == 1
        assert world.gl.runners[runner["id"]].description == ""


def test_get_current_user(world: World) -> None:
    response = world.client("glpat-admin").get("/user")
    assert response.status_code == 200
    assert response.json()["username"] == "admin"
    assert response.json()["is_admin"] is True


# ------------------------------------------------------------------ POST /runners/verify (runners API)
def test_verify_creates_manager_and_keeps_creation_state(world: World) -> None:
    created = world.create_runner()
    world.gl.clock.advance(30)
    response = runner_call(
        world, "POST", "/runners/verify", token=created["token"], system_id="s_ee3af03959fe", info=RUNNER_INFO
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"id": created["id"], "token": created["token"], "token_expires_at": None}
    runner = world.gl.runners[created["id"]]
    assert runner.creation_state == "started"
    assert runner.contacted_at == WORLD_START + timedelta(seconds=30)
    manager = runner.managers["s_ee3af03959fe"]
    assert (manager.version, manager.platform, manager.executor) == ("19.4.0", "linux", "kubernetes")
    assert manager.ip_address == "127.0.0.1"
    assert manager.contacted_at == WORLD_START + timedelta(seconds=30)


def test_verify_upserts_one_manager_per_system_id(world: World) -> None:
    created = world.create_runner()
    for _ in range(2):
        assert runner_call(world, "POST", "/runners/verify", token=created["token"], system_id="r_a").status_code == 200
        world.gl.clock.advance(60)
    assert runner_call(world, "POST", "/runners/verify", token=created["token"]).status_code == 200
    managers = world.gl.runners[created["id"]].managers
    assert sorted(managers) == ["<legacy>", "r_a"]
    assert managers["r_a"].created_at == WORLD_START
    assert managers["r_a"].contacted_at == WORLD_START + timedelta(seconds=60)


def test_verify_errors(world: World) -> None:
    missing = runner_call(world, "POST", "/runners/verify", system_id="s_x")
    assert missing.status_code == 400
    assert missing.json() == {"error": "token is missing"}
    unknown = runner_call(world, "POST", "/runners/verify", token="glrt-t1_unknownunknownunkno")
    assert unknown.status_code == 403
    assert unknown.json() == {"message": "403 Forbidden"}


def test_runner_token_header_alone_is_not_enough(world: World) -> None:
    created = world.create_runner()
    response = world.client(None).post("/runners/verify", json={}, headers={"Runner-Token": created["token"]})
    assert response.status_code == 400


# ------------------------------------------------------------------ token resets (runners API, runners API)
def test_reset_with_runner_token(world: World) -> None:
    created = world.create_runner()
    runner_call(world, "POST", "/runners/verify", token=created["token"], system_id="s_1")
    response = runner_call(world, "POST", "/runners/reset_authentication_token", token=created["token"])
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"token", "token_expires_at"}
    assert body["token"] != created["token"]
    assert TOKEN_RE.match(body["token"])
    assert runner_call(world, "POST", "/runners/verify", token=created["token"]).status_code == 403
    assert runner_call(world, "POST", "/runners/verify", token=body["token"]).json()["id"] == created["id"]
    assert created["token"] in world.gl.revoked_tokens
    assert world.gl.runner_by_token(created["token"]) is None
    assert "s_1" in world.gl.runners[created["id"]].managers
    again = runner_call(world, "POST", "/runners/reset_authentication_token", token=created["token"])
    assert again.status_code == 403
    assert again.json() == {"message": "403 Forbidden"}


def test_reset_with_expired_runner_token_is_refused(world: World) -> None:
    created = world.create_runner()
    world.gl.expire_token(created["id"])
    response = runner_call(world, "POST", "/runners/reset_authentication_token", token=created["token"])
    assert response.status_code == 403
    assert world.gl.runners[created["id"]].token == created["token"]


def test_reset_by_id_with_user_token(world: World) -> None:
    world.gl.settings.group_runner_token_expiration_interval = 7200
    created = world.create_runner("glpat-owner", runner_type="group_type", group_id=10)
    world.gl.expire_token(created["id"])
    assert runner_call(world, "POST", "/runners/verify", token=created["token"]).status_code == 403
    world.gl.clock.advance(100)
    response = world.client("glpat-owner").post(f"/runners/{created['id']}/reset_authentication_token")
    assert response.status_code == 201
    body = response.json()
    assert body["token_expires_at"] == iso(WORLD_START + timedelta(seconds=7300))
    assert runner_call(world, "POST", "/runners/verify", token=body["token"]).status_code == 200
    assert created["token"] in world.gl.revoked_tokens

    missing = world.client("glpat-owner").post("/runners/9999/reset_authentication_token")
    assert missing.status_code == 404
    assert missing.json() == {"message": "404 Runner Not Found"}
    denied = world.client("glpat-gmaint").post(f"/runners/{created['id']}/reset_authentication_token")
    assert denied.status_code == 403
    assert denied.json() == {"message": "403 Forbidden - No access granted"}


def test_revoke_token_out_of_band(world: World) -> None:
    created = world.create_runner()
    new_token = world.gl.revoke_token(created["id"])
    assert runner_call(world, "POST", "/runners/verify", token=created["token"]).status_code == 403
    assert runner_call(world, "POST", "/runners/verify", token=new_token).status_code == 200


# ------------------------------------------------------------------ token expiry (runner token expiry)
def test_token_expiry_from_settings_and_clock(world: World) -> None:
    world.gl.settings.group_runner_token_expiration_interval = 7200
    created = world.create_runner("glpat-owner", runner_type="group_type", group_id=10)
    assert created["token_expires_at"] == iso(WORLD_START + timedelta(seconds=7200))
    token = created["token"]
    world.gl.clock.advance(7199)
    assert runner_call(world, "POST", "/runners/verify", token=token).status_code == 200
    world.gl.clock.advance(1)
    for path in ("/runners/verify", "/jobs/request", "/runners/reset_authentication_token"):
        assert runner_call(world, "POST", path, token=token).status_code == 403
    assert runner_call(world, "DELETE", "/runners/managers", token=token, system_id="x").status_code == 403


def test_expiry_recomputed_from_current_settings_on_reset(world: World) -> None:
    world.gl.settings.project_runner_token_expiration_interval = 7200
    created = world.create_runner("glpat-pmaint", runner_type="project_type", project_id=100)
    assert created["token_expires_at"] == iso(WORLD_START + timedelta(hours=2))
    world.gl.settings.project_runner_token_expiration_interval = 3600
    world.gl.clock.advance(100)
    body = runner_call(world, "POST", "/runners/reset_authentication_token", token=created["token"]).json()
    assert body["token_expires_at"] == iso(WORLD_START + timedelta(seconds=3700))
    world.gl.settings.project_runner_token_expiration_interval = None
    body = runner_call(world, "POST", "/runners/reset_authentication_token", token=body["token"]).json()
    assert body["token_expires_at"] is None


def test_expiry_interval_is_the_minimum_over_the_hierarchy(world: World) -> None:
    gl = world.gl
    gl.settings.runner_token_expiration_interval = 20000
    gl.settings.group_runner_token_expiration_interval = 10000
    gl.settings.project_runner_token_expiration_interval = 10000
    top = gl.add_group(20, "top")
    sub = gl.add_group(21, "sub", parent_id=20)
    top.subgroup_runner_token_expiration_interval = 9000
    top.project_runner_token_expiration_interval = 8500
    sub.runner_token_expiration_interval = 9500
    project = gl.add_project(300, "p", group_id=21)
    project.runner_token_expiration_interval = 8800

    def expiry(**body: Any) -> str | None:
        value: str | None = world.create_runner("glpat-admin", **body)["token_expires_at"]
        return value

    assert expiry() == iso(WORLD_START + timedelta(seconds=20000))
    assert expiry(runner_type="group_type", group_id=21) == iso(WORLD_START + timedelta(seconds=9000))
    assert expiry(runner_type="group_type", group_id=20) == iso(WORLD_START + timedelta(seconds=10000))
    assert expiry(runner_type="project_type", project_id=300) == iso(WORLD_START + timedelta(seconds=8500))
    assert expiry(runner_type="project_type", project_id=100) == iso(WORLD_START + timedelta(seconds=10000))


# ------------------------------------------------------------------ GET /runners/:id (runners API)
def test_runner_details(world: World) -> None:
    created = world.create_runner(
        "glpat-pmaint", runner_type="project_type", project_id=100, description="web", tag_list=["k8s"]
    )
    world.gl.clock.advance(5)
    runner_call(world, "POST", "/jobs/request", token=created["token"], system_id="s_1", info=RUNNER_INFO)
    response = world.client("glpat-pmaint").get(f"/runners/{created['id']}")
    assert response.status_code == 200
    body = response.json()
    assert {"token", "token_expires_at"}.isdisjoint(body)
    assert body["id"] == created["id"]
    assert (body["description"], body["runner_type"], body["is_shared"]) == ("web", "project_type", False)
    assert (body["active"], body["paused"], body["online"], body["status"]) == (True, False, True, "online")
    assert (body["ip_address"], body["name"]) == (None, None)
    assert (body["version"], body["revision"], body["platform"], body["architecture"]) == (
        "19.4.0",
        "a1b2c3d4",
        "linux",
        "amd64",
    )
    assert body["tag_list"] == ["k8s"]
    assert (body["run_untagged"], body["locked"], body["maximum_timeout"]) == (True, False, None)
    assert body["access_level"] == "not_protected"
    assert body["created_at"] == iso(WORLD_START)
    assert body["contacted_at"] == iso(WORLD_START + timedelta(seconds=5))
    assert TIMESTAMP_RE.match(body["created_at"])
    assert body["created_by"]["username"] == "pmaint"
    assert body["groups"] == []
    assert [(p["id"], p["path_with_namespace"]) for p in body["projects"]] == [(100, "platform/team/web")]
    assert body["projects"][0]["name_with_namespace"] == "platform / Team / web"
    assert body["job_execution_status"] in ("idle", "active")
    no_projects = world.client("glpat-pmaint").get(f"/runners/{created['id']}", params={"include_projects": False})
    assert "projects" not in no_projects.json()


def test_group_runner_details_and_read_permissions(world: World) -> None:
    created = world.create_runner("glpat-owner", runner_type="group_type", group_id=11, maintenance_note="n")
    body = world.client("glpat-owner").get(f"/runners/{created['id']}").json()
    assert body["groups"] == [{"id": 11, "web_url": f"{world.gl.url}/groups/platform/team", "name": "Team"}]
    assert body["maintenance_note"] == "n"
    assert world.client("glpat-admin").get(f"/runners/{created['id']}").status_code == 200
    for token in ("glpat-gmaint", "glpat-outsider"):
        denied = world.client(token).get(f"/runners/{created['id']}")
        assert denied.status_code == 403
        assert denied.json() == {"message": "403 Forbidden - No access granted"}


def test_maintenance_note_only_for_updaters(world: World) -> None:
    created = world.create_runner(maintenance_note="secret plan")
    outsider = world.client("glpat-outsider").get(f"/runners/{created['id']}")
    assert outsider.status_code == 200  # any user may read an instance runner
    assert outsider.json()["maintenance_note"] is None
    assert world.client("glpat-admin").get(f"/runners/{created['id']}").json()["maintenance_note"] == "secret plan"


def test_get_runner_errors(world: World) -> None:
    client = world.client("glpat-admin")
    missing = client.get("/runners/4242")
    assert missing.status_code == 404
    assert missing.json() == {"message": "404 Runner Not Found"}
    invalid = client.get("/runners/abc")
    assert invalid.status_code == 400
    assert invalid.json() == {"error": "id is invalid"}


# ------------------------------------------------------------------ PUT /runners/:id (runners API)
def test_update_runner(world: World) -> None:
    created = world.create_runner("glpat-owner", runner_type="group_type", group_id=10)
    response = world.client("glpat-owner").put(
        f"/runners/{created['id']}",
        json={
            "description": "new",
            "paused": True,
            "tag_list": "a,b",
            "run_untagged": False,
            "locked": True,
            "access_level": "ref_protected",
            "maximum_timeout": 1200,
            "maintenance_note": "m",
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["description"], body["paused"], body["active"], body["tag_list"]) == ("new", True, False, ["a", "b"])
    assert (body["run_untagged"], body["locked"], body["access_level"]) == (False, True, "ref_protected")
    assert (body["maximum_timeout"], body["maintenance_note"], body["status"]) == (1200, "m", "never_contacted")
    runner = world.gl.runners[created["id"]]
    assert (runner.description, runner.paused, runner.tag_list) == ("new", True, ["a", "b"])

    form = world.client("glpat-owner").put(f"/runners/{created['id']}", data={"active": "true", "maximum_timeout": ""})
    assert form.status_code == 400  # "" is not an integer
    cleared = world.client("glpat-owner").put(
        f"/runners/{created['id']}", json={"active": True, "maximum_timeout": None}
    )
    assert cleared.status_code == 200
    assert (cleared.json()["paused"], cleared.json()["maximum_timeout"]) == (False, None)


def test_update_runner_errors(world: World) -> None:
    created = world.create_runner("glpat-owner", runner_type="group_type", group_id=10)
    client = world.client("glpat-owner")
    path = f"/runners/{created['id']}"
    both = client.put(path, json={"active": True, "paused": True})
    assert both.status_code == 400
    assert both.json() == {"error": "active, paused are mutually exclusive"}
    nothing = client.put(path, json={"unrelated": 1})
    assert nothing.status_code == 400
    assert nothing.json() == {
        "error": "description, active, paused, tag_list, run_untagged, locked, access_level, maximum_timeout, "
        "maintenance_note are missing, at least one parameter must be provided"
    }
    untagged = client.put(path, json={"run_untagged": False})
    assert untagged.status_code == 400
    assert untagged.json() == {
        "message": {"tags_list": ["can not be empty when runner is not allowed to pick untagged jobs"]}
    }
    short = client.put(path, json={"maximum_timeout": 60})
    assert short.json() == {"message": {"maximum_timeout": ["needs to be at least 10 minutes"]}}
    many = client.put(path, json={"tag_list": [f"t{i}" for i in range(51)]})
    assert many.json()["message"]["tags_list"] == ["Too many tags specified. Please limit the number of tags to 50"]
    assert client.put("/runners/999", json={"description": "x"}).status_code == 404
    denied = world.client("glpat-gmaint").put(path, json={"description": "x"})
    assert denied.status_code == 403
    assert denied.json() == {"message": "403 Forbidden - No access granted"}
    instance = world.create_runner()
    assert client.put(f"/runners/{instance['id']}", json={"description": "x"}).status_code == 403
    runner = world.gl.runners[created["id"]]
    assert (runner.description, runner.run_untagged, runner.maximum_timeout) == ("", True, None)


# ------------------------------------------------------------------ deletion (runners API, runners API, runners API)
def test_delete_runner_by_id(world: World) -> None:
    created = world.create_runner("glpat-owner", runner_type="group_type", group_id=10)
    runner_call(world, "POST", "/runners/verify", token=created["token"], system_id="s_1")
    response = world.client("glpat-owner").delete(f"/runners/{created['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert created["id"] not in world.gl.runners
    assert created["token"] in world.gl.revoked_tokens
    assert runner_call(world, "POST", "/runners/verify", token=created["token"]).status_code == 403
    assert runner_call(world, "POST", "/jobs/request", token=created["token"]).status_code == 403
    again = world.client("glpat-owner").delete(f"/runners/{created['id']}")
    assert again.status_code == 404
    assert again.json() == {"message": "404 Runner Not Found"}


def test_delete_permissions(world: World) -> None:
    created = world.create_runner("glpat-pmaint", runner_type="project_type", project_id=100)
    denied = world.client("glpat-dev").delete(f"/runners/{created['id']}")
    assert denied.status_code == 403
    assert denied.json() == {"message": "403 Forbidden - No access granted"}
    world.gl.add_runner_project(created["id"], 200)
    multi = world.client("glpat-pmaint").delete(f"/runners/{created['id']}")
    assert multi.status_code == 403
    assert multi.json() == {"message": "403 Forbidden - Runner associated with more than one project"}
    assert world.client("glpat-admin").delete(f"/runners/{created['id']}").status_code == 204


def test_delete_if_unmodified_since(world: World) -> None:
    created = world.create_runner()
    client = world.client("glpat-admin")
    world.gl.clock.advance(10)
    client.put(f"/runners/{created['id']}", json={"description": "touched"})
    stale = client.delete(f"/runners/{created['id']}", headers={"If-Unmodified-Since": "Sat, 03 May 2025 09:00:05 GMT"})
    assert stale.status_code == 412
    fresh = client.delete(f"/runners/{created['id']}", headers={"If-Unmodified-Since": "Sat, 03 May 2025 10:00:00 GMT"})
    assert fresh.status_code == 204


def test_delete_runner_by_token(world: World) -> None:
    created = world.create_runner()
    response = runner_call(world, "DELETE", "/runners", token=created["token"])
    assert response.status_code == 204
    assert world.gl.runners == {}
    assert created["token"] in world.gl.revoked_tokens
    assert runner_call(world, "DELETE", "/runners", token=created["token"]).status_code == 403
    assert runner_call(world, "DELETE", "/runners").json() == {"error": "token is missing"}


def test_delete_one_manager(world: World) -> None:
    created = world.create_runner()
    token = created["token"]
    for system_id in ("s_aaaaaaaaaaaa", "s_bbbbbbbbbbbb"):
        runner_call(world, "POST", "/runners/verify", token=token, system_id=system_id)
    response = runner_call(world, "DELETE", "/runners/managers", token=token, system_id="s_aaaaaaaaaaaa")
    assert response.status_code == 204
    assert response.content == b""
    assert sorted(world.gl.runners[created["id"]].managers) == ["s_bbbbbbbbbbbb"]
    assert runner_call(world, "POST", "/runners/verify", token=token).status_code == 200
    missing = runner_call(world, "DELETE", "/runners/managers", token=token, system_id="s_aaaaaaaaaaaa")
    assert missing.status_code == 404
    assert missing.json() == {"message": "404 Runner manager not found Not Found"}
    no_system_id = runner_call(world, "DELETE", "/runners/managers", token=token)
    assert no_system_id.status_code == 400
    assert no_system_id.json() == {"error": "system_id is missing"}
    assert runner_call(world, "DELETE", "/runners/managers").json() == {
        "error": "token is missing, system_id is missing"
    }
    bad = runner_call(world, "DELETE", "/runners/managers", token="glrt-nope", system_id="s_bbbbbbbbbbbb")
    assert bad.status_code == 403


# ------------------------------------------------------------------ managers and status (runners API, runners API)
def test_managers_list_and_status_over_time(world: World) -> None:
    created = world.create_runner()
    token = created["token"]
    for i in range(25):
        runner_call(world, "POST", "/runners/verify", token=token, system_id=f"r_{i:012d}", info=RUNNER_INFO)
    client = world.client("glpat-admin")
    managers = client.get(f"/runners/{created['id']}/managers")
    assert managers.status_code == 200
    assert "x-total" not in managers.headers
    items = managers.json()
    assert len(items) == 25
    assert set(items[0]) == {
        "id",
        "system_id",
        "version",
        "revision",
        "platform",
        "architecture",
        "created_at",
        "contacted_at",
        "ip_address",
        "status",
        "job_execution_status",
    }
    assert items[0]["system_id"] == "r_000000000000"
    assert (items[0]["status"], items[0]["version"], items[0]["ip_address"]) == ("online", "19.4.0", "127.0.0.1")
    world.gl.clock.advance(2 * 3600)
    assert {m["status"] for m in client.get(f"/runners/{created['id']}/managers").json()} == {"offline"}
    world.gl.clock.advance(7 * 86400)
    assert {m["status"] for m in client.get(f"/runners/{created['id']}/managers").json()} == {"stale"}
    assert client.get("/runners/999/managers").status_code == 404
    outsider = world.client("glpat-outsider").get(f"/runners/{created['id']}/managers")
    assert outsider.status_code == 200  # instance runners are readable by every user


def test_runner_status_rules(world: World) -> None:
    created = world.create_runner()
    client = world.client("glpat-admin")

    def status() -> tuple[str, bool | None]:
        body = client.get(f"/runners/{created['id']}").json()
        return body["status"], body["online"]

    assert status() == ("never_contacted", None)
    runner_call(world, "POST", "/runners/verify", token=created["token"])
    assert status() == ("online", True)
    world.gl.clock.advance(2 * 3600 - 1)
    assert status() == ("online", True)
    world.gl.clock.advance(1)
    assert status() == ("offline", False)
    client.put(f"/runners/{created['id']}", json={"paused": True})
    assert status() == ("paused", False)
    world.gl.clock.advance(7 * 86400)
    assert status() == ("stale", False)


def test_never_contacted_runner_becomes_stale(world: World) -> None:
    created = world.create_runner()
    world.gl.clock.advance(7 * 86400)
    assert world.client("glpat-admin").get(f"/runners/{created['id']}").json()["status"] == "stale"
    assert world.gl.status_of(created["id"]) == "stale"


# ------------------------------------------------------------------ POST /jobs/request (job requests)
def test_jobs_request_without_job(world: World) -> None:
    created = world.create_runner()
    world.gl.clock.advance(3)
    body = {
        "info": RUNNER_INFO,
        "token": created["token"],
        "system_id": "s_ee3af03959fe",
        "session": {"url": "https://x", "certificate": "c", "authorization": "a"},
        "unknown_top_level_key": True,
    }
    response = world.client(None).post("/jobs/request", json=body)
    assert response.status_code == 204
    assert response.content == b""
    last_update = response.headers["X-GitLab-Last-Update"]
    assert re.fullmatch(r"[0-9a-f]+", last_update)
    runner = world.gl.runners[created["id"]]
    assert runner.creation_state == "finished"
    assert runner.contacted_at == WORLD_START + timedelta(seconds=3)
    manager = runner.managers["s_ee3af03959fe"]
    assert (manager.version, manager.revision, manager.platform, manager.architecture, manager.executor) == (
        "19.4.0",
        "a1b2c3d4",
        "linux",
        "amd64",
        "kubernetes",
    )
    assert manager.ip_address == "127.0.0.1"
    assert manager.config == {"gpus": ""}
    same = world.client(None).post("/jobs/request", json={**body, "last_update": last_update})
    assert (same.status_code, same.headers["X-GitLab-Last-Update"]) == (204, last_update)


def test_jobs_request_hands_out_a_job(world: World) -> None:
    created = world.create_runner(tag_list=["docker"])
    token = created["token"]
    first = runner_call(world, "POST", "/jobs/request", token=token, system_id="s_1")
    last_update = first.headers["X-GitLab-Last-Update"]
    gpu_job = world.gl.enqueue_job(tags=["gpu"])  # this runner cannot take it
    job_id = world.gl.enqueue_job(tags=["docker"], payload={"variables": [{"key": "A", "value": "1"}]})
    response = runner_call(world, "POST", "/jobs/request", token=token, system_id="s_1", last_update=last_update)
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert "X-GitLab-Last-Update" not in response.headers
    job = response.json()
    assert job["id"] == job_id
    assert {"token", "job_info", "git_info", "runner_info", "variables", "steps"} <= set(job)
    assert job["variables"] == [{"key": "A", "value": "1"}]
    assert world.gl.assigned_jobs == [(job_id, created["id"], "s_1")]
    after = runner_call(world, "POST", "/jobs/request", token=token, system_id="s_1")
    assert after.status_code == 204
    assert gpu_job not in [j for j, _, _ in world.gl.assigned_jobs]


def test_jobs_request_paused_runner_gets_no_job(world: World) -> None:
    created = world.create_runner(paused=True)
    world.gl.enqueue_job()
    response = runner_call(world, "POST", "/jobs/request", token=created["token"])
    assert response.status_code == 204
    assert response.headers["X-GitLab-Last-Update"]
    assert world.gl.assigned_jobs == []
    assert world.gl.runners[created["id"]].managers["<legacy>"].contacted_at == WORLD_START


def test_jobs_request_errors(world: World) -> None:
    assert runner_call(world, "POST", "/jobs/request").json() == {"error": "token is missing"}
    bad = runner_call(world, "POST", "/jobs/request", token="glrt-t1_xxxxxxxxxxxxxxxxxxxx")
    assert (bad.status_code, bad.json()) == (403, {"message": "403 Forbidden"})


# ------------------------------------------------------------------ lists (REST pagination, runners API)
def test_list_all_is_admin_only(world: World) -> None:
    world.create_runner()
    denied = world.client("glpat-owner").get("/runners/all")
    assert denied.status_code == 403
    assert denied.json() == {"message": "403 Forbidden"}
    response = world.client("glpat-admin").get("/runners/all")
    assert response.status_code == 200
    assert [r["runner_type"] for r in response.json()] == ["instance_type"]
    assert set(response.json()[0]) >= {
        "id",
        "description",
        "ip_address",
        "active",
        "paused",
        "is_shared",
        "runner_type",
        "name",
        "online",
        "created_at",
        "status",
    }


def test_pagination_headers(world: World) -> None:
    ids = [world.gl.create_runner(description=f"r{i}").id for i in range(25)]
    client = world.client("glpat-admin")
    page2 = client.get("/runners/all", params={"per_page": 10, "page": 2, "type": "instance_type"})
    assert page2.status_code == 200
    assert [r["id"] for r in page2.json()] == ids[10:20]
    headers = page2.headers
    assert (headers["x-page"], headers["x-per-page"], headers["x-next-page"], headers["x-prev-page"]) == (
        "2",
        "10",
        "3",
        "1",
    )
    assert (headers["x-total"], headers["x-total-pages"]) == ("25", "3")
    links = {rel: url for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', headers["link"])}
    assert set(links) == {"prev", "next", "first", "last"}
    for rel, page in (("prev", "1"), ("next", "3"), ("first", "1"), ("last", "3")):
        url = urlsplit(links[rel])
        query = parse_qs(url.query)
        assert url.path == "/api/v4/runners/all"
        assert (query["page"], query["per_page"], query["type"]) == ([page], ["10"], ["instance_type"])
    last = client.get(links["last"])
    assert [r["id"] for r in last.json()] == ids[20:]
    assert (last.headers["x-next-page"], last.headers["x-prev-page"]) == ("", "2")
    assert 'rel="next"' not in last.headers["link"]
    default = client.get("/runners/all")
    assert (len(default.json()), default.headers["x-per-page"]) == (20, "20")
    capped = client.get("/runners/all", params={"per_page": 500})
    assert capped.headers["x-per-page"] == "100"
    empty = world.client("glpat-outsider").get("/runners")
    assert (empty.json(), empty.headers["x-total"], empty.headers["x-total-pages"]) == ([], "0", "1")


def test_pagination_totals_left_out_above_10000(world: World) -> None:
    for _ in range(10_001):
        world.gl.create_runner()
    response = world.client("glpat-admin").get("/runners/all", params={"per_page": 100, "page": 2})
    assert response.status_code == 200
    assert len(response.json()) == 100
    assert "x-total" not in response.headers
    assert "x-total-pages" not in response.headers
    assert (response.headers["x-next-page"], response.headers["x-prev-page"]) == ("3", "1")
    assert 'rel="last"' not in response.headers["link"]
    assert 'rel="first"' in response.headers["link"]


def test_list_filters(world: World) -> None:
    gl = world.gl
    online = gl.create_runner(tag_list=["a", "b"])
    paused = gl.create_runner(paused=True, tag_list=["a"])
    group = gl.create_runner("group_type", group_id=10)
    gl.update_runner(online.id, contacted_at=gl.clock.now())
    gl.update_runner(paused.id, contacted_at=gl.clock.now() - timedelta(hours=3))
    client = world.client("glpat-admin")

    def ids(**params: Any) -> list[int]:
        response = client.get("/runners/all", params=params)
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()]

    assert ids(type="group_type") == [group.id]
    assert ids(scope="online") == [online.id]
    assert ids(scope="offline") == [paused.id]
    assert ids(scope="never_contacted") == [group.id]
    assert ids(scope="paused") == [paused.id]
    assert ids(scope="shared") == [online.id, paused.id]
    assert ids(scope="specific") == [group.id]
    gl.clock.advance(7 * 86400)
    assert ids(scope="stale") == [online.id, paused.id, group.id]
    assert client.get("/runners/all", params={"type": "x"}).json() == {"error": "type does not have a valid value"}
    bad_scope = client.get("/runners", params={"scope": "shared"})
    assert (bad_scope.status_code, bad_scope.json()) == (400, {"message": "Scope contains invalid value"})


def test_list_own_runners(world: World) -> None:
    instance = world.create_runner()
    g10 = world.create_runner("glpat-owner", runner_type="group_type", group_id=10)
    g11 = world.create_runner("glpat-owner", runner_type="group_type", group_id=11)
    p100 = world.create_runner("glpat-pmaint", runner_type="project_type", project_id=100)

    def ids(token: str) -> list[int]:
        return [r["id"] for r in world.client(token).get("/runners").json()]

    assert ids("glpat-owner") == [g10["id"], g11["id"], p100["id"]]
    assert ids("glpat-pmaint") == [p100["id"]]
    assert ids("glpat-outsider") == []
    assert instance["id"] not in ids("glpat-admin")


def test_group_runner_list(world: World) -> None:
    instance = world.create_runner()
    g10 = world.create_runner("glpat-owner", runner_type="group_type", group_id=10)
    g11 = world.create_runner("glpat-owner", runner_type="group_type", group_id=11)
    world.create_runner("glpat-pmaint", runner_type="project_type", project_id=100)
    client = world.client("glpat-owner")
    sub = client.get("/groups/11/runners")
    assert sub.status_code == 200
    assert [r["id"] for r in sub.json()] == [instance["id"], g10["id"], g11["id"]]
    assert sub.headers["x-total"] == "3"
    assert [r["id"] for r in client.get("/groups/10/runners").json()] == [instance["id"], g10["id"]]
    assert [r["id"] for r in client.get("/groups/platform%2Fteam/runners", params={"type": "group_type"}).json()] == [
        g10["id"],
        g11["id"],
    ]
    assert world.client("glpat-gmaint").get("/groups/10/runners").status_code == 200
    gdev = world.gl.add_user("gdev")
    world.gl.add_group(12, "devs", developers=[gdev])
    world.gl.add_access_token("glpat-gdev", gdev, ["api"])
    assert world.client("glpat-gdev").get("/groups/12/runners").json() == {"message": "403 Forbidden"}
    hidden = world.client("glpat-outsider").get("/groups/10/runners")
    assert (hidden.status_code, hidden.json()) == (404, {"message": "404 Group Not Found"})


def test_project_runner_list(world: World) -> None:
    instance = world.create_runner()
    g10 = world.create_runner("glpat-owner", runner_type="group_type", group_id=10)
    g11 = world.create_runner("glpat-owner", runner_type="group_type", group_id=11)
    p100 = world.create_runner("glpat-pmaint", runner_type="project_type", project_id=100)
    world.create_runner("glpat-owner", runner_type="project_type", project_id=200)
    response = world.client("glpat-pmaint").get("/projects/100/runners")
    assert response.status_code == 200
    assert [r["id"] for r in response.json()] == [instance["id"], g10["id"], g11["id"], p100["id"]]
    by_path = world.client("glpat-pmaint").get(
        "/projects/platform%2Fteam%2Fweb/runners", params={"type": "project_type"}
    )
    assert [r["id"] for r in by_path.json()] == [p100["id"]]
    assert world.client("glpat-dev").get("/projects/100/runners").status_code == 403
    hidden = world.client("glpat-outsider").get("/projects/100/runners")
    assert (hidden.status_code, hidden.json()) == (404, {"message": "404 Project Not Found"})


# ------------------------------------------------------------------ misc
def test_unknown_route_and_method(world: World) -> None:
    client = world.client("glpat-admin")
    unknown = client.get("/no/such/thing")
    assert (unknown.status_code, unknown.json()) == (404, {"error": "404 Not Found"})
    assert client.patch("/user/runners", json={}).status_code == 405
    assert httpx.get(world.gl.url + "/elsewhere").status_code == 404


def test_head_request(world: World) -> None:
    world.create_runner()
    response = world.client("glpat-admin").head("/runners/all")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["x-total"] == "1"


def test_call_log_never_holds_token_values(world: World) -> None:
    created = world.create_runner(description="logged")
    token = created["token"]
    runner_call(world, "POST", "/runners/verify", token=token, system_id="s_log")
    runner_call(world, "POST", "/runners/reset_authentication_token", token=token)
    world.client(None).post("/runners/verify", params={"token": token})
    world.client(None).get("/runners/all", params={"private_token": "glpat-admin"})
    calls = world.gl.calls
    text = repr(calls) + repr(world.gl.runners) + repr(world.gl.runner_by_token(token))
    for secret in (token, "glpat-admin", *world.gl.revoked_tokens):
        assert secret not in text
    create, verify = calls[0], calls[1]
    assert (create.method, create.path, create.status, create.user) == ("POST", "/api/v4/user/runners", 201, "admin")
    assert create.params == {"runner_type": "instance_type", "description": "logged"}
    assert (verify.body_keys, verify.params, verify.runner_id) == (["token", "system_id"], {"system_id": "s_log"}, 1)
    assert calls[3].query == {"token": "[FILTERED]"}
    assert calls[3].status == 403
    assert all(c.time == WORLD_START for c in calls)


def test_fake_gitlab_fixture_is_empty_with_a_real_clock(fake_gitlab: FakeGitLab) -> None:
    assert fake_gitlab.runners == {}
    assert fake_gitlab.url.startswith("http://127.0.0.1:")
    assert not fake_gitlab.clock.is_frozen
    response = httpx.post(fake_gitlab.api_url + "/user/runners", json={"runner_type": "instance_type"})
    assert response.status_code == 401


def test_concurrent_creates_get_unique_ids_and_tokens(world: World) -> None:
    client = world.client("glpat-admin")

    def create(_: int) -> dict[str, Any]:
        response = client.post("/user/runners", json={"runner_type": "instance_type"})
        assert response.status_code == 201
        result: dict[str, Any] = response.json()
        return result

    with ThreadPoolExecutor(max_workers=8) as pool:
        created = list(pool.map(create, range(64)))
    assert len({c["id"] for c in created}) == 64
    assert len({c["token"] for c in created}) == 64
    assert len(world.gl.runners) == 64
    assert len(world.gl.calls) == 64
    assert world.gl.internal_errors == []


def test_clock() -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    frozen = Clock.frozen(start)
    assert frozen.now() == start
    assert frozen.advance(90) == start + timedelta(seconds=90)
    frozen.set(start)
    assert frozen.now() == start
    running = Clock()
    before = datetime.now(UTC)
    running.advance(3600)
    assert running.now() >= before + timedelta(seconds=3600)
    running.set(start)
    assert start <= running.now() < start + timedelta(seconds=5)
    assert running.freeze() == running.now()
    with pytest.raises(ValueError, match="aware"):
        running.set(datetime(2030, 1, 1))
