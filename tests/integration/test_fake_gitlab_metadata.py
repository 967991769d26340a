"""``GET /metadata`` and ``GET /version`` of the fake GitLab, and the features its configured version gates."""

from __future__ import annotations

from typing import Any

import gitlab
import httpx
import pytest

from tests.fake_gitlab.versions import DEFAULT_REVISION, DEFAULT_VERSION, parse_version

from .conftest import World

CURRENT = {
    "version": DEFAULT_VERSION,
    "revision": DEFAULT_REVISION,
    "kas": {
        "enabled": True,
        "externalUrl": "grpc://gitlab.example.com:8150",
        "externalK8sProxyUrl": "https://gitlab.example.com:8150/k8s-proxy",
        "version": "18.6.2",
    },
    "enterprise": True,
}
NOT_FOUND_ROUTE = {"error": "404 Not Found"}


def control(world: World) -> httpx.Client:
    return httpx.Client(base_url=world.gl.url + "/-/fake", timeout=5)


def test_default_version_is_current() -> None:
    assert parse_version(DEFAULT_VERSION) >= (18, 6, 0)


@pytest.mark.parametrize("path", ["/metadata", "/version"])
def test_metadata_body(world: World, path: str) -> None:
    response = world.client("glpat-owner").get(path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == CURRENT


@pytest.mark.parametrize("scope", ["api", "read_api", "read_user"])
def test_metadata_scopes_granted(world: World, scope: str) -> None:
    world.gl.add_access_token("glpat-meta", world.users["dev"], [scope])
    assert world.client("glpat-meta").get("/metadata").status_code == 200
    assert world.client("glpat-meta").get("/version").status_code == 200


@pytest.mark.parametrize("scope", ["read_repository", "create_runner", "manage_runner", "self_rotate"])
def test_metadata_scopes_refused(world: World, scope: str) -> None:
    world.gl.add_access_token("glpat-meta", world.users["dev"], [scope])
    response = world.client("glpat-meta").get("/metadata")
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"


def test_metadata_authentication(world: World) -> None:
    assert world.client(None).get("/metadata").json() == {"message": "401 Unauthorized"}
    assert world.client("glpat-expired").get("/version").status_code == 401
    head = world.client("glpat-owner").head("/metadata")
    assert (head.status_code, head.content) == (200, b"")


def test_metadata_by_version(world: World) -> None:
    client = world.client("glpat-owner")
    instance = world.gl.instance
    instance.version = "17.5.3-ee"  # before kas.externalK8sProxyUrl
    assert "externalK8sProxyUrl" not in client.get("/metadata").json()["kas"]
    instance.version = "16.11.0"  # CE: no -ee
    body = client.get("/metadata").json()
    assert (body["enterprise"], body["kas"]["version"]) == (False, "16.11.0")
    instance.version = "15.5.1-ee"  # before enterprise
    assert "enterprise" not in client.get("/metadata").json()
    assert client.get("/version").json() == client.get("/metadata").json()
    instance.version = "15.4.6-ee"  # /version answers only version and revision
    assert client.get("/version").json() == {"version": "15.4.6-ee", "revision": DEFAULT_REVISION}
    assert client.get("/metadata").status_code == 200
    instance.version = "15.1.0-ee"  # no /metadata at all
    missing = client.get("/metadata")
    assert (missing.status_code, missing.json()) == (404, NOT_FOUND_ROUTE)
    assert client.get("/version").json()["version"] == "15.1.0-ee"


def test_kas_off_and_explicit_fields(world: World) -> None:
    world.gl.instance.kas_enabled = False
    world.gl.instance.enterprise = False  # an EE package can report false only by override here
    body = world.client("glpat-owner").get("/metadata").json()
    assert body["kas"] == {"enabled": False, "externalUrl": None, "externalK8sProxyUrl": None, "version": None}
    assert body["enterprise"] is False


def test_instance_through_the_control_api(world: World) -> None:
    with control(world) as ctl:
        assert ctl.get("/instance").json()["version"] == DEFAULT_VERSION
        put = ctl.put("/instance", json={"version": "17.9.1", "revision": "abc", "kas_version": "17.9.0"})
        assert (put.status_code, put.json()["is_enterprise"]) == (200, False)
        assert ctl.put("/instance", json={"bogus": 1}).status_code == 400
        assert ctl.put("/instance", json={"version": "latest"}).status_code == 400
        assert ctl.get("/state").json()["version"] == "17.9.1"
    body = world.client("glpat-owner").get("/metadata").json()
    assert (body["version"], body["revision"], body["kas"]["version"]) == ("17.9.1", "abc", "17.9.0")


def test_python_gitlab_version_and_metadata(world: World) -> None:
    gl = gitlab.Gitlab(world.gl.url, private_token="glpat-read")
    assert gl.version() == (DEFAULT_VERSION, DEFAULT_REVISION)
    assert gl.http_get("/metadata") == CURRENT
    world.gl.instance.version = "15.1.0-ee"
    with pytest.raises(gitlab.GitlabHttpError) as missing:
        gitlab.Gitlab(world.gl.url, private_token="glpat-read").http_get("/metadata")
    assert missing.value.response_code == 404
    # python-gitlab's version() swallows errors into "unknown"; /version itself still answers on 15.1
    assert gitlab.Gitlab(world.gl.url, private_token="glpat-read").version()[0] == "15.1.0-ee"


# ----------------------------------------------------------------------------- features gated by the version
def _runner_with_manager(world: World) -> dict[str, Any]:
    created = world.create_runner("glpat-owner", runner_type="group_type", group_id=10, maintenance_note="note")
    verify = world.client(None).post("/runners/verify", json={"token": created["token"], "system_id": "s_1"})
    assert verify.status_code == 200
    return created


def test_user_runners_needs_15_10(world: World) -> None:
    world.gl.instance.version = "15.9.8-ee"
    response = world.client("glpat-owner").post("/user/runners", json={"runner_type": "group_type", "group_id": 10})
    assert (response.status_code, response.json()) == (404, NOT_FOUND_ROUTE)
    assert world.gl.runners == {}
    world.gl.instance.version = "15.10.0-ee"
    assert world.create_runner("glpat-owner", runner_type="group_type", group_id=10)["token"].startswith("glrt-")


def test_runner_managers_list_needs_17_1(world: World) -> None:
    created = _runner_with_manager(world)
    path = f"/runners/{created['id']}/managers"
    world.gl.instance.version = "17.0.5-ee"
    response = world.client("glpat-owner").get(path)
    assert (response.status_code, response.json()) == (404, NOT_FOUND_ROUTE)
    world.gl.instance.version = "17.1.0-ee"
    assert [m["system_id"] for m in world.client("glpat-owner").get(path).json()] == ["s_1"]


def test_delete_runner_manager_needs_16_0(world: World) -> None:
    created = _runner_with_manager(world)
    body = {"token": created["token"], "system_id": "s_1"}
    world.gl.instance.version = "15.11.13-ee"
    # no such route: the path is DELETE /runners/:id, which wants a user token
    response = world.client(None).request("DELETE", "/runners/managers", json=body)
    assert (response.status_code, response.json()) == (401, {"message": "401 Unauthorized"})
    runner = world.gl.runner(created["id"])
    assert runner is not None and list(runner.managers) == ["s_1"]
    world.gl.instance.version = "16.0.0-ee"
    assert world.client(None).request("DELETE", "/runners/managers", json=body).status_code == 204


def test_maintenance_note_in_runner_details_needs_16_10(world: World) -> None:
    created = _runner_with_manager(world)
    client = world.client("glpat-owner")
    path = f"/runners/{created['id']}"
    world.gl.instance.version = "16.9.2-ee"
    assert "maintenance_note" not in client.get(path).json()
    # an undeclared parameter is ignored ...
    assert client.put(path, json={"description": "d", "maintenance_note": "changed"}).status_code == 200
    runner = world.gl.runner(created["id"])
    assert runner is not None and (runner.description, runner.maintenance_note) == ("d", "note")
    # ... so alone it leaves no parameter at all
    alone = client.put(path, json={"maintenance_note": "changed"})
    assert alone.status_code == 400 and alone.json()["error"].endswith("at least one parameter must be provided")
    world.gl.instance.version = "16.10.0-ee"
    assert client.get(path).json()["maintenance_note"] == "note"
    assert client.put(path, json={"maintenance_note": "changed"}).json()["maintenance_note"] == "changed"


def test_runner_api_works_on_the_oldest_supported_version(world: World) -> None:
    """On 15.10 the glrt- flow (create, verify, reset, delete) works; only the later additions are missing."""
    world.gl.instance.version = "15.10.0"
    created = world.create_runner("glpat-owner", runner_type="group_type", group_id=10)
    client = world.client(None)
    assert client.post("/runners/verify", json={"token": created["token"], "system_id": "s_9"}).status_code == 200
    reset = client.post("/runners/reset_authentication_token", json={"token": created["token"]})
    assert reset.status_code == 201
    assert client.request("DELETE", "/runners", json={"token": reset.json()["token"]}).status_code == 204
