"""The fake GitLab's ``/jwt/auth`` (the container registry's token endpoint) and deploy-token expiry, over HTTP.

The JWT is checked as a registry checks it: RS256 signature against the certificate the fake hands out, ``kid`` =
the certificate key's RFC 7638 thumbprint, issuer and audience. Expiry: both GitLab behaviours at their boundary
instants on the world's frozen clock."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fake_gitlab.registry_auth import ISSUER, SERVICE, TOKEN_LIFETIME_SECONDS, jwk_thumbprint

from .conftest import World

WEB = "platform/team/web"  # project 100 (group 11 below group 10)
TOOLS = "platform/tools"  # project 200 (group 10)
TICK = timedelta(microseconds=1)


class Creds(tuple[str, str]):
    """(username, token) whose repr shows a fingerprint, never the token (pytest prints failing calls' arguments)."""

    def __repr__(self) -> str:
        return f"Creds({self[0]!r}, sha256 {hashlib.sha256(self[1].encode()).hexdigest()[:12]})"


def jwt_auth(world: World, auth: tuple[str, str] | None, *scopes: str, service: str | None = SERVICE) -> httpx.Response:
    params: list[tuple[str, str | int | float | bool | None]] = [("service", service)] if service else []
    params += [("scope", s) for s in scopes]
    return httpx.get(world.gl.url + "/jwt/auth", params=params, auth=auth, timeout=5)


def b64json(segment: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return decoded


def verified(world: World, response: httpx.Response) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of the reply's JWT after checking its signature against the fake's certificate."""
    assert response.status_code == 200, response.text
    assert list(response.json()) == ["token"]
    header_b64, claims_b64, signature_b64 = response.json()["token"].split(".")
    cert = x509.load_pem_x509_certificate(world.gl.registry_certificate_pem())
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    signature = base64.urlsafe_b64decode(signature_b64 + "=" * (-len(signature_b64) % 4))
    public.verify(signature, f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())
    header = b64json(header_b64)
    numbers = public.public_numbers()
    assert header == {"typ": "JWT", "alg": "RS256", "kid": jwk_thumbprint(numbers.n, numbers.e)}
    claims = b64json(claims_b64)
    assert (claims["iss"], claims["aud"]) == (ISSUER, SERVICE)
    assert claims["exp"] - claims["iat"] == TOKEN_LIFETIME_SECONDS and claims["nbf"] <= claims["iat"]
    return header, claims


def grants(world: World, response: httpx.Response) -> dict[str, list[str]]:
    return {entry["name"]: entry["actions"] for entry in verified(world, response)[1]["access"]}


def deploy_token(world: World, scopes: list[str], **body: Any) -> Creds:
    """(username, token) of a deploy token made through the API on project 100 (or ``group`` 10)."""
    group = body.pop("group", False)
    path = "/groups/10/deploy_tokens" if group else "/projects/100/deploy_tokens"
    made = world.client("glpat-owner").post(path, json={"name": "t", "scopes": scopes, **body})
    assert made.status_code == 201, made.text
    return Creds((made.json()["username"], made.json()["token"]))


# --- tokens and grants --------------------------------------------------------------------------------------------


def test_a_read_registry_token_gets_a_signed_pull_token_for_its_project_only(world: World) -> None:
    creds = deploy_token(world, ["read_registry"])
    header, claims = verified(world, jwt_auth(world, creds, f"repository:{WEB}/app:pull,push"))
    assert header["kid"]
    (entry,) = claims["access"]
    assert entry == {
        "type": "repository",
        "name": f"{WEB}/app",
        "actions": ["pull"],
        "meta": {"project_path": WEB, "project_id": 100, "root_namespace_id": 10},
    }
    assert claims["auth_type"] == "deploy_token" and "sub" not in claims
    user_info = b64json(claims["user"].split(".")[1])["user_info"]
    assert user_info["username"] == creds[0] and user_info["token_type"] == "deploy_token"
    # another project's repository: authenticated, nothing granted (the scope is left out)
    assert grants(world, jwt_auth(world, creds, f"repository:{TOOLS}:pull")) == {}


def test_write_registry_grants_push_and_both_scopes_grant_both(world: World) -> None:
    writer = deploy_token(world, ["write_registry"])
    both = deploy_token(world, ["read_registry", "write_registry"])
    scope = f"repository:{WEB}:pull,push"
    assert grants(world, jwt_auth(world, writer, scope)) == {WEB: ["push"]}
    assert grants(world, jwt_auth(world, both, scope)) == {WEB: ["pull", "push"]}
    # several scope parameters, and space-separated ones in one parameter
    several = jwt_auth(world, both, f"repository:{WEB}/a:pull", f"repository:{WEB}/b:push repository:{TOOLS}:pull")
    assert grants(world, several) == {f"{WEB}/a": ["pull"], f"{WEB}/b": ["push"]}
    # delete and * need a user's admin_container_image; a deploy token never gets them
    assert grants(world, jwt_auth(world, both, f"repository:{WEB}:delete,*")) == {}


def test_a_group_token_covers_the_projects_below_its_group(world: World) -> None:
    creds = deploy_token(world, ["read_registry"], group=True)
    scopes = (f"repository:{WEB}:pull", f"repository:{TOOLS}:pull")
    assert grants(world, jwt_auth(world, creds, *scopes)) == {WEB: ["pull"], TOOLS: ["pull"]}


def test_paths_the_registry_would_not_accept_are_dropped(world: World) -> None:
    creds = deploy_token(world, ["read_registry"])
    bad = (
        "repository:Platform/Team/Web:pull",  # registry paths are lower case
        "repository:web:pull",  # one component
        "repository:nowhere/else:pull",  # no such project
        f"repository:{WEB}",  # no actions
        f"blob:{WEB}:pull",
    )
    assert grants(world, jwt_auth(world, creds, *bad)) == {}


def test_personal_access_tokens_follow_the_users_role_and_the_tokens_scopes(world: World) -> None:
    scope = f"repository:{WEB}:pull,push"
    assert grants(world, jwt_auth(world, ("anything", "glpat-dev"), scope)) == {WEB: ["pull", "push"]}
    _, claims = verified(world, jwt_auth(world, ("dev", "glpat-dev"), scope))
    assert claims["sub"] == "dev" and claims["auth_type"] == "personal_access_token"
    assert grants(world, jwt_auth(world, ("outsider", "glpat-outsider"), scope)) == {}
    assert grants(world, jwt_auth(world, ("admin", "glpat-admin"), "registry:catalog:*")) == {"catalog": ["*"]}
    assert grants(world, jwt_auth(world, ("owner", "glpat-read"), scope)) == {WEB: ["pull"]}  # read_api: read only
    no_registry = jwt_auth(world, ("owner", "glpat-create"), scope)  # create_runner gives no registry ability
    assert (no_registry.status_code, no_registry.json()["errors"][0]["code"]) == (403, "DENIED")
    for dead in ("glpat-expired", "glpat-revoked"):
        assert jwt_auth(world, ("owner", dead), scope).status_code == 401


def test_anonymous_is_refused_on_private_projects_and_reads_public_ones(world: World) -> None:
    denied = jwt_auth(world, None, f"repository:{WEB}:pull")
    assert (denied.status_code, denied.json()) == (403, {"errors": [{"code": "DENIED", "message": "access forbidden"}]})
    assert jwt_auth(world, None).status_code == 403  # no scope either
    with world.gl._lock:
        world.gl._state.projects[200].visibility = "public"
    _, claims = verified(world, jwt_auth(world, None, f"repository:{TOOLS}:pull,push"))
    assert [e["actions"] for e in claims["access"]] == [["pull"]] and claims["auth_type"] == "none"
    assert jwt_auth(world, None, f"repository:{TOOLS}:push").status_code == 403


def test_refusals_are_shaped_as_gitlabs(world: World) -> None:
    creds = deploy_token(world, ["read_registry"])
    bad = jwt_auth(world, Creds((creds[0], "gldt-not-it")), f"repository:{WEB}:pull")
    assert bad.status_code == 401 and "www-authenticate" not in bad.headers
    (error,) = bad.json()["errors"]
    assert error["code"] == "UNAUTHORIZED" and error["message"].startswith("HTTP Basic: Access denied.")
    assert "expired, or improperly scoped" in error["message"]
    # credentials are checked before the service: bad credentials with a bad service are still 401
    assert jwt_auth(world, Creds((creds[0], "gldt-not-it")), service="other").status_code == 401
    assert jwt_auth(world, creds, service="other").status_code == 404
    # GitLab routes only GET: containerd's OAuth2 POST gets 404 and falls back to GET with Basic auth
    posted = httpx.post(world.gl.url + "/jwt/auth", data={"grant_type": "password", "service": SERVICE}, timeout=5)
    assert posted.status_code == 404


# --- expiry, both behaviours ---------------------------------------------------------------------------------------


def token_state(world: World, creds: Creds) -> tuple[int, bool, bool]:
    """(status at /jwt/auth, the entity's ``expired``, listed by ``?active=true``) for the only token."""
    api = world.client("glpat-owner")
    status = jwt_auth(world, creds, f"repository:{WEB}:pull").status_code
    (entity,) = api.get("/projects/100/deploy_tokens").json()
    active = [t["id"] for t in api.get("/projects/100/deploy_tokens", params={"active": "true"}).json()]
    return status, entity["expired"], entity["id"] in active


MIDNIGHT = datetime(2025, 5, 4, tzinfo=UTC)  # the world starts 2025-05-03T09:00Z; a token dated 05-04 dies here


def test_instant_expiry_refuses_from_the_exact_instant(world: World) -> None:
    assert world.gl.settings.deploy_token_expiry_mode == "instant"  # the default
    creds = deploy_token(world, ["read_registry"], expires_at="2025-05-04")
    world.gl.clock.set(MIDNIGHT - TICK)
    assert token_state(world, creds) == (200, False, True)
    world.gl.clock.set(MIDNIGHT)
    assert token_state(world, creds) == (401, True, False)
    assert world.gl.active_deploy_tokens() == []


def test_legacy_expiry_accepts_at_the_instant_and_reports_expired_by_the_date(world: World) -> None:
    world.gl.settings.deploy_token_expiry_mode = "legacy"
    creds = deploy_token(world, ["read_registry"], expires_at="2025-05-04")
    world.gl.clock.set(MIDNIGHT - TICK)
    assert token_state(world, creds) == (200, False, True)
    world.gl.clock.set(MIDNIGHT)  # `expires_at >= NOW()` still finds it
    assert token_state(world, creds) == (200, False, True)
    world.gl.clock.set(MIDNIGHT + TICK)  # refused, listed inactive, but not `expired` until the date is past
    assert token_state(world, creds) == (401, False, False)
    world.gl.clock.set(MIDNIGHT + timedelta(days=1))
    assert token_state(world, creds) == (401, True, False)


@pytest.mark.parametrize("offset_minutes", [-300, 600])
def test_legacy_midnight_expiry_is_the_same_whatever_the_host_zone(world: World, offset_minutes: int) -> None:
    world.gl.settings.deploy_token_expiry_mode = "legacy"
    world.gl.settings.host_utc_offset_minutes = offset_minutes
    creds = deploy_token(world, ["read_registry"], expires_at="2025-05-04")
    for at, expected in ((MIDNIGHT - TICK, 200), (MIDNIGHT, 200), (MIDNIGHT + TICK, 401)):
        world.gl.clock.set(at)
        assert token_state(world, creds)[0] == expected, at


def test_legacy_on_a_host_ahead_of_utc_answers_500_for_a_found_but_expired_token(world: World) -> None:
    """A token expiring later today (UTC) when the host's local date is already tomorrow: the lookup finds it,
    ``expired?`` refuses it, and GitLab answered 500."""
    world.gl.settings.deploy_token_expiry_mode = "legacy"
    world.gl.settings.host_utc_offset_minutes = 600  # UTC+10
    world.gl.settings.deploy_token_lifetime_seconds = 30
    world.gl.clock.set(datetime(2025, 5, 3, 12, 0, tzinfo=UTC))  # 22:00 local: same date, no disagreement
    same_day = deploy_token(world, ["read_registry"], expires_at="2030-01-01")
    assert jwt_auth(world, same_day, f"repository:{WEB}:pull").status_code == 200
    world.gl.clock.set(datetime(2025, 5, 3, 20, 0, tzinfo=UTC))  # 06:00 local on 05-04
    made = world.client("glpat-owner").post(
        "/projects/100/deploy_tokens", json={"name": "late", "scopes": ["read_registry"], "expires_at": "2030-01-01"}
    )
    assert made.status_code == 201 and made.json()["expired"] is True  # judged expired the moment it is made
    late = Creds((made.json()["username"], made.json()["token"]))
    failed = jwt_auth(world, late, f"repository:{WEB}:pull")
    assert (failed.status_code, failed.json()) == (500, {"message": "500 Internal Server Error"})
    assert made.json()["id"] in [t.id for t in world.gl.active_deploy_tokens()]  # the lookup still finds it
    world.gl.clock.advance(30)  # at expires_at: still found (`expires_at >= NOW()`), still judged expired
    assert jwt_auth(world, late, f"repository:{WEB}:pull").status_code == 500
    world.gl.clock.advance(1)  # past it: not found any more, so a plain 401
    assert jwt_auth(world, late, f"repository:{WEB}:pull").status_code == 401
    # the same tokens under instant expiry: never a 500
    world.gl.settings.deploy_token_expiry_mode = "instant"
    world.gl.clock.advance(-31)
    assert jwt_auth(world, late, f"repository:{WEB}:pull").status_code == 200
