"""Deploy tokens and the registry token check of the fake GitLab, through python-gitlab and raw HTTP."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import gitlab
import httpx
import pytest

from tests.fake_gitlab import Fault
from tests.fake_gitlab.deploy_tokens import granted_actions

from .conftest import WORLD_START, World


def client(world: World, token: str) -> gitlab.Gitlab:
    return gitlab.Gitlab(world.gl.url, private_token=token)


def registry_auth(world: World, username: str, token: str, repo: str = "platform/team/web") -> httpx.Response:
    return httpx.get(
        world.gl.url + "/jwt/auth",
        params={"service": "container_registry", "scope": f"repository:{repo}:pull"},
        auth=(username, token),
        timeout=5,
    )


def fp(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def test_project_token_lifecycle_with_python_gitlab(world: World) -> None:
    project = client(world, "glpat-pmaint").projects.get(100, lazy=True)
    created = project.deploytokens.create(
        {"name": "pull", "scopes": ["read_registry"], "expires_at": "2025-05-10T15:30:00Z", "username": "ci.pull"}
    )
    assert created.token.startswith("gldt-"), fp(created.token)
    # GitLab expires a deploy token at 00:00 UTC of its date
    assert created.expires_at == "2025-05-10T00:00:00.000Z"
    assert (created.username, created.revoked, created.expired) == ("ci.pull", False, False)

    listed = project.deploytokens.list()
    assert [t.id for t in listed] == [created.id]
    assert "token" not in listed[0].attributes  # shown once, at creation
    fetched = project.deploytokens.get(created.id)
    assert fetched.scopes == ["read_registry"] and "token" not in fetched.attributes

    assert registry_auth(world, "ci.pull", created.token).status_code == 200
    project.deploytokens.delete(created.id)
    (revoked,) = project.deploytokens.list()
    assert revoked.revoked is True
    assert project.deploytokens.list(active=True) == []
    assert registry_auth(world, "ci.pull", created.token).status_code == 401


def test_default_username_and_no_expiry(world: World) -> None:
    project = client(world, "glpat-pmaint").projects.get(100, lazy=True)
    created = project.deploytokens.create({"name": "forever", "scopes": ["read_repository"]})
    assert created.username == f"gitlab+deploy-token-{created.id}"
    assert created.expires_at is None


def test_expiry_at_midnight_utc_and_expired_flag(world: World) -> None:
    project = client(world, "glpat-pmaint").projects.get(100, lazy=True)
    # WORLD_START is 2025-05-03T09:00Z; a token dated tomorrow dies at 2025-05-04T00:00Z
    created = project.deploytokens.create({"name": "short", "scopes": ["read_registry"], "expires_at": "2025-05-04"})
    world.gl.clock.set(datetime(2025, 5, 3, 23, 59, 59, tzinfo=UTC))
    assert project.deploytokens.get(created.id).expired is False
    assert registry_auth(world, created.username, created.token).status_code == 200
    world.gl.clock.set(datetime(2025, 5, 4, 0, 0, 0, tzinfo=UTC))
    assert project.deploytokens.get(created.id).expired is True
    assert registry_auth(world, created.username, created.token).status_code == 401
    assert [t.id for t in project.deploytokens.list(active=False)] == [created.id]


def test_shortened_lifetime_knob(world: World) -> None:
    world.gl.settings.deploy_token_lifetime_seconds = 30
    project = client(world, "glpat-pmaint").projects.get(100, lazy=True)
    created = project.deploytokens.create({"name": "s", "scopes": ["read_registry"], "expires_at": "2030-01-01"})
    assert created.expires_at == "2025-05-03T09:00:30.000Z"
    world.gl.clock.advance(30)
    assert registry_auth(world, created.username, created.token).status_code == 401


def test_group_tokens_need_owner_to_create_and_revoke(world: World) -> None:
    as_maint = client(world, "glpat-gmaint").groups.get(10, lazy=True)
    with pytest.raises(gitlab.GitlabCreateError) as refused:
        as_maint.deploytokens.create({"name": "g", "scopes": ["read_registry"]})
    assert (refused.value.response_code, refused.value.error_message) == (403, "403 Forbidden")
    as_owner = client(world, "glpat-owner").groups.get(10, lazy=True)
    created = as_owner.deploytokens.create({"name": "g", "scopes": ["read_registry"]})
    assert [t.id for t in as_maint.deploytokens.list()] == [created.id]  # Maintainer may read
    with pytest.raises(gitlab.GitlabDeleteError) as no_revoke:
        as_maint.deploytokens.delete(created.id)
    assert no_revoke.value.response_code == 403
    # a group token covers the images of projects below the group
    ok = registry_auth(world, created.username, created.token, "platform/team/web")
    assert ok.status_code == 200 and granted_actions(ok.json()) == ["pull"]
    as_owner.deploytokens.delete(created.id)
    assert world.gl.active_deploy_tokens() == []


def test_project_developer_and_outsider(world: World) -> None:
    with pytest.raises(gitlab.GitlabListError) as dev:
        client(world, "glpat-dev").projects.get(100, lazy=True).deploytokens.list()
    assert dev.value.response_code == 403
    with pytest.raises(gitlab.GitlabListError) as outsider:
        client(world, "glpat-outsider").projects.get(100, lazy=True).deploytokens.list()
    assert (outsider.value.response_code, outsider.value.error_message) == (404, "404 Project Not Found")
    with pytest.raises(gitlab.GitlabListError) as group:
        client(world, "glpat-outsider").groups.get(10, lazy=True).deploytokens.list()
    assert group.value.error_message == "404 Group Not Found"


def test_validation_errors(world: World) -> None:
    api = world.client("glpat-pmaint")
    url = "/projects/100/deploy_tokens"
    assert api.post(url, json={"scopes": ["read_registry"]}).json() == {"error": "name is missing"}
    assert api.post(url, json={"name": "x"}).json() == {"error": "scopes is missing"}
    bad = api.post(url, json={"name": "x", "scopes": ["read_api"]})
    assert (bad.status_code, bad.json()) == (400, {"error": "scopes does not have a valid value"})
    user = api.post(url, json={"name": "x", "scopes": ["read_registry"], "username": "bad name"})
    assert (user.status_code, user.json()) == (
        400,
        {"message": "Username can contain only letters, digits, '_', '-', '+', and '.'"},
    )
    assert api.get(f"{url}/999").json() == {"message": "404 Not found"}
    # `:id` may be the URL-encoded full path
    assert api.get("/projects/platform%2Fteam%2Fweb/deploy_tokens").json() == []
    assert world.gl.deploy_tokens() == []


def test_access_token_scope(world: World) -> None:
    read_only = world.client("glpat-read")  # the owner's read_api token
    assert read_only.get("/groups/10/deploy_tokens").status_code == 200
    refused = read_only.post("/groups/10/deploy_tokens", json={"name": "x", "scopes": ["read_registry"]})
    assert (refused.status_code, refused.json()["error"]) == (403, "insufficient_scope")


def test_registry_check(world: World) -> None:
    project = client(world, "glpat-pmaint").projects.get(100, lazy=True)
    repo_only = project.deploytokens.create({"name": "r", "scopes": ["read_repository"]})
    pull = project.deploytokens.create({"name": "p", "scopes": ["read_registry"]})
    # valid credentials without any registry scope: authenticated, then refused as GitLab does
    denied = registry_auth(world, repo_only.username, repo_only.token)
    assert (denied.status_code, denied.json()) == (403, {"errors": [{"code": "DENIED", "message": "access forbidden"}]})
    assert granted_actions(registry_auth(world, pull.username, pull.token).json()) == ["pull"]
    assert granted_actions(registry_auth(world, pull.username, pull.token, "platform/tools").json()) == []
    assert registry_auth(world, "someone-else", pull.token).status_code == 401
    assert registry_auth(world, pull.username, "gldt-wrong").status_code == 401
    no_service = httpx.get(world.gl.url + "/jwt/auth", timeout=5)
    assert (no_service.status_code, no_service.text) == (404, "")


def test_faults_apply_to_deploy_tokens(world: World) -> None:
    world.gl.faults.add(Fault(method="POST", path=r"/api/v4/projects/\d+/deploy_tokens", kind="drop_after_commit"))
    api = world.client("glpat-pmaint")
    with pytest.raises(httpx.TransportError):
        api.post("/projects/100/deploy_tokens", json={"name": "lost", "scopes": ["read_registry"]})
    # the reply was lost but the token exists: what the operator's stray search is for
    (lost,) = world.gl.active_deploy_tokens()
    assert lost.name == "lost"
    world.gl.faults.add(Fault(path="/jwt/auth", kind="status", status=503))
    assert registry_auth(world, lost.username, lost.token).status_code == 503


def test_reset_forgets_tokens_but_remembers_secrets(world: World) -> None:
    made = world.gl.create_deploy_token(name="x", scopes=["read_registry"], project_id=100)
    world.gl.reset()
    assert world.gl.deploy_tokens() == []
    assert made.token in world.gl.revoked_tokens
    assert world.gl.clock.now() == WORLD_START  # the clock is kept
