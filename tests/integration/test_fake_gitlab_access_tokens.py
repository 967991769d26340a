"""Access tokens of the fake GitLab over HTTP and with python-gitlab: self-information, self-rotation, rotation by id,
group/project token rotation, token families with reuse detection, expiry at 00:00 UTC, and the counters."""

from __future__ import annotations

import email.utils
from datetime import UTC, date, datetime, timedelta
from typing import Any

import gitlab
import httpx
import pytest

from tests.fake_gitlab import AccessToken

from .conftest import WORLD_START, World

# WORLD_START is 2025-05-03 09:00 UTC: "today" for the fake.
TODAY = WORLD_START.date()
IN_A_MONTH = date(2025, 6, 3)
REVOKED = {"error": "invalid_token", "error_description": "Token was revoked. You have to re-authorize from the user."}
EXPIRED = {
    "error": "invalid_token",
    "error_description": "Token is expired. You can either do re-authorization or token refresh.",
}
UNAUTHORIZED = {"message": "401 Unauthorized"}
SELF = "/personal_access_tokens/self"
SELF_ROTATE = "/personal_access_tokens/self/rotate"


def add(
    world: World,
    value: str,
    user: str = "owner",
    scopes: tuple[str, ...] = ("api",),
    expires: date | None = IN_A_MONTH,
    **kwargs: Any,
) -> AccessToken:
    return world.gl.add_access_token(value, world.users[user], list(scopes), expires_at=expires, **kwargs)


def rotate_self(world: World, token: str, **body: Any) -> httpx.Response:
    return world.client(token).post(SELF_ROTATE, json=body or None)


def rotated(world: World, token: str, **body: Any) -> dict[str, Any]:
    """Self-rotate ``token``; asserts 200 and returns the body (with the new ``token``)."""
    response = rotate_self(world, token, **body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def gl_client(world: World, token: str) -> gitlab.Gitlab:
    return gitlab.Gitlab(world.gl.url, private_token=token)


# ----------------------------------------------------------------------------- GET /personal_access_tokens/self
def test_self_information_fields(world: World) -> None:
    token = add(world, "glpat-info", scopes=("read_api", "self_rotate"), name="operator", description="for the op")
    response = world.client("glpat-info").get(SELF)
    assert response.status_code == 200
    assert response.json() == {
        "id": token.id,
        "name": "operator",
        "revoked": False,
        "created_at": "2025-05-03T09:00:00.000Z",
        "description": "for the op",
        "scopes": ["read_api", "self_rotate"],
        "user_id": world.users["owner"].id,
        "last_used_at": "2025-05-03T09:00:00.000Z",  # this very request
        "active": True,
        "expires_at": "2025-06-03",  # a date, no time part
        "last_used_ips": ["127.0.0.1"],
    }


def test_last_used_at_is_refreshed_at_most_every_ten_minutes(world: World) -> None:
    add(world, "glpat-used")
    assert world.gl.access_token("glpat-used").last_used_at is None  # type: ignore[union-attr]
    world.client("glpat-used").get("/user")
    world.gl.clock.advance(599)
    assert world.client("glpat-used").get(SELF).json()["last_used_at"] == "2025-05-03T09:00:00.000Z"
    world.gl.clock.advance(1)
    assert world.client("glpat-used").get(SELF).json()["last_used_at"] == "2025-05-03T09:10:00.000Z"


@pytest.mark.parametrize(
    "scope", ["api", "read_api", "read_user", "create_runner", "manage_runner", "read_repository", "self_rotate"]
)
def test_self_information_with_any_scope(world: World, scope: str) -> None:
    add(world, "glpat-any", scopes=(scope,))
    assert world.client("glpat-any").get(SELF).status_code == 200


def test_self_information_refuses_dead_tokens(world: World) -> None:
    expired = world.client("glpat-expired").get(SELF)
    assert (expired.status_code, expired.json()) == (401, EXPIRED)
    revoked = world.client("glpat-revoked").get(SELF)
    assert (revoked.status_code, revoked.json()) == (401, REVOKED)
    unknown = world.client("glpat-nobody").get(SELF)
    assert (unknown.status_code, unknown.json()) == (401, UNAUTHORIZED)
    assert world.client(None).get(SELF).status_code == 401


def test_oauth_tokens(world: World) -> None:
    add(world, "oauth-secret-value", kind="oauth")
    bearer = world.client(None, headers={"Authorization": "Bearer oauth-secret-value"})
    assert bearer.get("/user").status_code == 200
    not_a_pat = bearer.get(SELF)
    assert (not_a_pat.status_code, not_a_pat.json()) == (
        400,
        {"message": "400 Bad request - This endpoint requires token type to be a personal access token"},
    )
    assert bearer.post(SELF_ROTATE).status_code == 405
    # GitLab looks OAuth tokens up from the Authorization header only
    assert world.client("oauth-secret-value").get("/user").status_code == 401


def test_delete_self_revokes_the_calling_token(world: World) -> None:
    add(world, "glpat-bye", scopes=("read_user",))
    assert world.client("glpat-bye").delete(SELF).status_code == 204
    after = world.client("glpat-bye").get(SELF)
    assert (after.status_code, after.json()) == (401, REVOKED)


def test_get_by_id(world: World) -> None:
    own = add(world, "glpat-own")
    assert world.client("glpat-owner").get(f"/personal_access_tokens/{own.id}").json()["name"] == own.name
    assert world.client("glpat-outsider").get(f"/personal_access_tokens/{own.id}").status_code == 401
    assert world.client("glpat-admin").get(f"/personal_access_tokens/{own.id}").status_code == 200
    assert world.client("glpat-admin").get("/personal_access_tokens/999").json() == {"message": "404 Not Found"}
    assert world.client("glpat-owner").get("/personal_access_tokens/999").status_code == 401


def test_list_tokens_with_filters(world: World) -> None:
    """``GET /personal_access_tokens``: a user's own tokens (filters ``state``, ``revoked``, ``search``), any user's
    for an administrator with ``user_id``; another user's ``user_id`` is 401, an unknown one 404 for an admin."""
    first = add(world, "glpat-list-a", name="Deploy bot")
    second = add(world, "glpat-list-b", name="deploy bot")
    world.gl.revoke_access_token(first.id)
    owner = world.client("glpat-owner")
    listed = owner.get("/personal_access_tokens", params={"search": "DEPLOY", "state": "active"}).json()
    assert [t["id"] for t in listed] == [second.id] and listed[0]["active"] is True and "token" not in listed[0]
    revoked = owner.get("/personal_access_tokens", params={"search": "deploy", "revoked": "true"}).json()
    assert [t["id"] for t in revoked] == [first.id]
    everyone = owner.get("/personal_access_tokens").json()
    assert {t["user_id"] for t in everyone} == {world.users["owner"].id}
    user_id = world.users["owner"].id
    assert owner.get("/personal_access_tokens", params={"user_id": user_id}).status_code == 200
    assert world.client("glpat-outsider").get("/personal_access_tokens", params={"user_id": user_id}).status_code == 401
    admin = world.client("glpat-admin")
    by_admin = admin.get("/personal_access_tokens", params={"user_id": user_id, "search": "deploy bot"}).json()
    assert [t["id"] for t in by_admin] == [first.id, second.id]
    assert admin.get("/personal_access_tokens", params={"user_id": 99999}).status_code == 404
    assert owner.get("/personal_access_tokens", params={"state": "gone"}).status_code == 400


# ----------------------------------------------------------------------------- POST /personal_access_tokens/self/rotate
def test_self_rotation(world: World) -> None:
    old = add(world, "glpat-rot", scopes=("api", "read_user"), name="conn", description="connection token")
    response = rotate_self(world, "glpat-rot")
    assert response.status_code == 200  # not 201
    body = response.json()
    new_token = body.pop("token")
    assert new_token.startswith("glpat-") and new_token != "glpat-rot"
    assert body["id"] != old.id
    assert body == {
        "id": body["id"],
        "name": "conn",
        "revoked": False,
        "created_at": "2025-05-03T09:00:00.000Z",
        "description": "connection token",
        "scopes": ["api", "read_user"],
        "user_id": world.users["owner"].id,
        "last_used_at": None,
        "active": True,
        "expires_at": "2025-05-10",  # today + 7 days by default
    }
    # the old token is revoked at once, no grace period; the new one works
    assert world.client("glpat-rot").get("/user").json() == REVOKED
    assert world.client(new_token).get("/user").status_code == 200
    stored = world.gl.access_token(new_token)
    assert stored is not None and stored.previous_personal_access_token_id == old.id
    assert [t.id for t in world.gl.token_family("glpat-rot")] == [old.id, body["id"]]
    assert world.gl.newest_in_family(old.id).token == new_token
    # no secret in the call log
    assert new_token not in repr(world.gl.calls) and "glpat-rot" not in repr(world.gl.calls)


@pytest.mark.parametrize(
    ("expires_at", "expected"),
    [
        ("2025-06-01", "2025-06-01"),
        ("2025-06-01T23:30:00Z", "2025-06-01"),  # a Date parameter: the time part is dropped
        ("2026-05-03", "2026-05-03"),  # today + 365 days: the longest allowed
    ],
)
def test_self_rotation_with_expires_at(world: World, expires_at: str, expected: str) -> None:
    add(world, "glpat-exp")
    assert rotated(world, "glpat-exp", expires_at=expires_at)["expires_at"] == expected


@pytest.mark.parametrize(
    ("expires_at", "body"),
    [
        ("next week", {"error": "expires_at is invalid"}),
        ("2025-02-30", {"error": "expires_at is invalid"}),
        ("2026-05-04", {"message": "400 Bad request - Expiration date must be before 2026-05-03"}),
    ],
)
def test_self_rotation_refused_dates_keep_the_old_token(world: World, expires_at: str, body: dict[str, str]) -> None:
    add(world, "glpat-bad")
    response = rotate_self(world, "glpat-bad", expires_at=expires_at)
    assert (response.status_code, response.json()) == (400, body)
    assert world.client("glpat-bad").get("/user").status_code == 200
    assert len(world.gl.token_family("glpat-bad")) == 1


def test_rotation_without_required_expiry(world: World) -> None:
    world.gl.settings.require_personal_access_token_expiry = False
    add(world, "glpat-free")
    body = rotated(world, "glpat-free")
    assert body["expires_at"] is None
    assert rotated(world, body["token"], expires_at="2030-01-01")["expires_at"] == "2030-01-01"


def test_rotation_expiry_setting_through_the_control_api(world: World) -> None:
    control = httpx.Client(base_url=world.gl.url + "/-/fake", timeout=5)
    with control:
        put = control.put("/settings", json={"require_personal_access_token_expiry": False})
        assert put.json()["require_personal_access_token_expiry"] is False
    assert world.gl.settings.require_personal_access_token_expiry is False


@pytest.mark.parametrize("scope", ["read_api", "read_user", "create_runner", "manage_runner", "read_repository"])
def test_self_rotation_needs_api_or_self_rotate(world: World, scope: str) -> None:
    add(world, "glpat-narrow", scopes=(scope,))
    response = rotate_self(world, "glpat-narrow")
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert world.client("glpat-narrow").get(SELF).json()["revoked"] is False


def test_self_rotate_scope_exists_from_17_9(world: World) -> None:
    add(world, "glpat-sr", scopes=("self_rotate",))
    add(world, "glpat-api-178")
    world.gl.instance.version = "17.8.4-ee"
    # unknown before 17.9: the token holds no scope that this version knows
    assert rotate_self(world, "glpat-sr").json()["error"] == "insufficient_scope"
    assert world.client("glpat-sr").get(SELF).status_code == 403
    assert rotate_self(world, "glpat-api-178").status_code == 200
    world.gl.instance.version = "17.9.0-ee"
    body = rotated(world, "glpat-sr")
    assert body["scopes"] == ["self_rotate"]
    # a self_rotate token can only read itself and rotate itself
    assert world.client(body["token"]).get("/user").status_code == 403
    assert world.client(body["token"]).get(SELF).status_code == 200


def test_self_rotation_route_by_version(world: World) -> None:
    add(world, "glpat-old-gitlab")
    world.gl.instance.version = "16.9.0"
    # before 16.10 the path falls to the rotate-by-id route (16.0), whose id is an integer
    response = rotate_self(world, "glpat-old-gitlab")
    assert (response.status_code, response.json()) == (400, {"error": "id is invalid"})
    world.gl.instance.version = "15.11.2"
    response = rotate_self(world, "glpat-old-gitlab")
    assert (response.status_code, response.json()) == (404, {"error": "404 Not Found"})
    world.gl.instance.version = "15.4.0"
    assert world.client("glpat-old-gitlab").get(SELF).json() == {"error": "id is invalid"}  # GET :id (15.1)
    world.gl.instance.version = "15.5.0"
    assert world.client("glpat-old-gitlab").get(SELF).status_code == 200


def test_bot_tokens_may_self_rotate_as_personal_tokens(world: World) -> None:
    bot = world.gl.add_group_access_token("glpat-gbot", 10, access_level=40, name="group bot")
    body = rotated(world, "glpat-gbot")
    assert (body["name"], body["user_id"]) == ("group bot", bot.user_id)


# ----------------------------------------------------------------------------- POST /personal_access_tokens/:id/rotate
def test_rotate_by_id(world: World) -> None:
    target = add(world, "glpat-target", name="target")
    by_owner = world.client("glpat-owner").post(f"/personal_access_tokens/{target.id}/rotate")
    assert by_owner.status_code == 200
    assert (by_owner.json()["name"], by_owner.json()["expires_at"]) == ("target", "2025-05-10")
    assert world.client("glpat-target").get("/user").json() == REVOKED
    newer = by_owner.json()["id"]
    by_admin = world.client("glpat-admin").post(
        f"/personal_access_tokens/{newer}/rotate", json={"expires_at": "2025-07-01"}
    )
    assert (by_admin.status_code, by_admin.json()["expires_at"]) == (200, "2025-07-01")
    assert len(world.gl.token_family(target.id)) == 3


def test_rotate_by_id_errors(world: World) -> None:
    target = add(world, "glpat-t2")
    path = f"/personal_access_tokens/{target.id}/rotate"
    assert world.client("glpat-outsider").post(path).json() == UNAUTHORIZED
    assert world.client("glpat-outsider").post("/personal_access_tokens/999/rotate").json() == UNAUTHORIZED
    missing = world.client("glpat-admin").post("/personal_access_tokens/999/rotate")
    assert (missing.status_code, missing.json()) == (404, {"message": "404 Not Found"})
    assert world.client("glpat-read").post(path).json()["error"] == "insufficient_scope"
    revoked = world.gl.access_token("glpat-revoked")
    assert revoked is not None
    again = world.client("glpat-owner").post(f"/personal_access_tokens/{revoked.id}/rotate")
    assert (again.status_code, again.json()) == (400, {"message": "400 Bad request - Token already revoked"})
    assert world.client("glpat-owner").post(path, json={"expires_at": "soon"}).json() == {
        "error": "expires_at is invalid"
    }


def test_an_expired_token_can_be_rotated_by_id(world: World) -> None:
    expired = world.gl.access_token("glpat-expired")
    assert expired is not None
    response = world.client("glpat-owner").post(f"/personal_access_tokens/{expired.id}/rotate")
    assert response.status_code == 200
    assert world.client(response.json()["token"]).get("/user").status_code == 200


def test_rotate_by_id_ignores_expires_at_before_16_6(world: World) -> None:
    target = add(world, "glpat-t3")
    world.gl.instance.version = "16.5.0-ee"
    response = world.client("glpat-owner").post(f"/personal_access_tokens/{target.id}/rotate", json={"expires_at": "x"})
    assert (response.status_code, response.json()["expires_at"]) == (200, "2025-05-10")


# ----------------------------------------------------------------------------- reuse detection
def test_reuse_on_self_rotate_revokes_the_new_token(world: World) -> None:
    add(world, "glpat-reuse")
    first = rotated(world, "glpat-reuse")
    # the classic failure: a retried rotate with the pre-rotation token
    retry = rotate_self(world, "glpat-reuse")
    assert (retry.status_code, retry.json()) == (401, REVOKED)
    assert world.client(first["token"]).get("/user").json() == REVOKED
    assert len(world.gl.token_family("glpat-reuse")) == 2  # nothing new was created
    counters = world.gl.token_counters
    (detection,) = counters.reuse_detections
    old = world.gl.access_token("glpat-reuse")
    assert old is not None
    assert (detection.token_id, detection.revoked_ids) == (old.id, [first["id"]])
    assert (detection.method, detection.path, detection.time) == ("POST", SELF_ROTATE, WORLD_START)
    assert counters.revoked_calls == {f"POST {SELF_ROTATE}": 1, "GET /user": 1}


def test_reuse_revokes_every_active_descendant(world: World) -> None:
    add(world, "glpat-gen0")
    gen1 = rotated(world, "glpat-gen0")
    gen2 = rotated(world, gen1["token"])
    gen3 = rotated(world, gen2["token"])
    # an old generation on rotate-by-id: the newest is the only active descendant
    gen0 = world.gl.access_token("glpat-gen0")
    assert gen0 is not None
    response = world.client("glpat-gen0").post(f"/personal_access_tokens/{gen0.id}/rotate")
    assert response.json() == REVOKED
    assert world.gl.token_counters.reuse_detections[0].revoked_ids == [gen3["id"]]
    assert not any(t.active(WORLD_START) for t in world.gl.token_family("glpat-gen0"))
    # a middle generation revokes nothing more but still counts as a trigger
    assert rotate_self(world, gen1["token"]).json() == REVOKED
    assert [d.revoked_ids for d in world.gl.token_counters.reuse_detections] == [[gen3["id"]], []]


@pytest.mark.parametrize(
    "path",
    [
        "/groups/10/access_tokens/self/rotate",
        "/projects/100/access_tokens/5/rotate",
        "/groups/x/access_tokens/7/rotate",
    ],
)
def test_reuse_detection_covers_every_rotate_path(world: World, path: str) -> None:
    add(world, "glpat-r0")
    new = rotated(world, "glpat-r0")
    assert world.client("glpat-r0").post(path).json() == REVOKED
    assert world.client(new["token"]).get(SELF).json() == REVOKED
    assert len(world.gl.token_counters.reuse_detections) == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/user"),
        ("GET", "/runners"),
        ("POST", "/user/runners"),
        ("GET", SELF),
        ("GET", "/metadata"),
        ("DELETE", SELF),
        ("GET", "/projects/100/deploy_tokens"),
        ("POST", "/personal_access_tokens/self/rotation"),  # not a rotate path: no route at all
    ],
)
def test_the_old_token_elsewhere_revokes_nothing(world: World, method: str, path: str) -> None:
    add(world, "glpat-e0")
    new = rotated(world, "glpat-e0")
    response = world.client("glpat-e0").request(method, path, json={"runner_type": "instance_type"})
    if path.endswith("/rotation"):
        assert response.status_code == 404  # routing comes before authentication
    else:
        assert (response.status_code, response.json()) == (401, REVOKED)
    assert world.client(new["token"]).get(SELF).json()["active"] is True
    counters = world.gl.token_counters
    assert counters.reuse_detections == []
    assert counters.revoked_total == (0 if path.endswith("/rotation") else 1)


def test_expired_and_revoked_on_a_rotate_path_is_expired_without_detection(world: World) -> None:
    # GitLab checks expiry before revocation: a rotated-away token that has also expired triggers nothing
    add(world, "glpat-x0", expires=date(2025, 5, 4))
    new = rotated(world, "glpat-x0", expires_at="2025-06-01")
    world.gl.clock.set(datetime(2025, 5, 4, tzinfo=UTC))
    assert rotate_self(world, "glpat-x0").json() == EXPIRED
    assert world.client(new["token"]).get(SELF).json()["active"] is True
    counters = world.gl.token_counters
    assert (counters.expired_calls, counters.revoked_total, counters.reuse_detections) == (
        {f"POST {SELF_ROTATE}": 1},
        0,
        [],
    )


def test_out_of_band_revocation_is_not_reuse(world: World) -> None:
    add(world, "glpat-oob")
    new = rotated(world, "glpat-oob")
    world.gl.revoke_access_token(new["id"])
    assert world.client(new["token"]).get("/user").json() == REVOKED
    assert world.gl.token_counters.reuse_detections == []


# ----------------------------------------------------------------------------- expiry and the clock
def test_expiry_is_00_00_utc_of_the_date(world: World) -> None:
    add(world, "glpat-midnight", expires=date(2025, 5, 4))
    assert world.gl.access_token_expiry("glpat-midnight") == datetime(2025, 5, 4, tzinfo=UTC)
    world.gl.set_clock_before_expiry("glpat-midnight", 1)
    assert world.gl.clock.now() == datetime(2025, 5, 3, 23, 59, 59, tzinfo=UTC)
    alive = world.client("glpat-midnight").get(SELF)
    assert (alive.status_code, alive.json()["active"]) == (200, True)
    world.gl.clock.advance(1)
    dead = world.client("glpat-midnight").get(SELF)
    assert (dead.status_code, dead.json()) == (401, EXPIRED)
    world.client("glpat-midnight").get("/runners")
    assert world.gl.token_counters.expired_calls == {f"GET {SELF}": 1, "GET /runners": 1}
    assert world.gl.token_counters.expired_total == 2


def test_a_datetime_expiry_is_cut_to_its_date(world: World) -> None:
    token = add(world, "glpat-cut", expires=None)
    world.gl.add_access_token("glpat-cut2", world.users["owner"], ["api"], expires_at=WORLD_START + timedelta(hours=20))
    assert token.expires_at is None
    cut = world.gl.access_token("glpat-cut2")
    assert cut is not None and cut.expires_at == date(2025, 5, 4)


def test_five_rotations_driven_by_the_clock(world: World) -> None:
    """The pattern for renewal tests: put the fake's clock just before the current token's expiry, rotate."""
    add(world, "glpat-chain", expires=date(2025, 5, 4))
    current = "glpat-chain"
    seen_dates = []
    for _ in range(5):
        now = world.gl.set_clock_before_expiry(current, 60)
        response = world.client(current).post(SELF_ROTATE)
        assert response.status_code == 200
        # the Date header tells the fake's time, moved clock included
        assert email.utils.parsedate_to_datetime(response.headers["Date"]) == now.replace(microsecond=0)
        body = response.json()
        assert date.fromisoformat(body["expires_at"]) == now.date() + timedelta(days=7)
        seen_dates.append(body["expires_at"])
        current = body["token"]
    assert seen_dates == ["2025-05-10", "2025-05-16", "2025-05-22", "2025-05-28", "2025-06-03"]
    chain = world.gl.token_family("glpat-chain")
    now = world.gl.clock.now()
    assert [t.active(now) for t in chain] == [False] * 5 + [True]
    assert world.gl.token_counters.reuse_detections == []


# ----------------------------------------------------------------------------- 401 everywhere the fake authenticates
USER_TOKEN_ENDPOINTS = [
    ("GET", "/user"),
    ("POST", "/user/runners"),
    ("GET", "/runners"),
    ("GET", "/runners/all"),
    ("GET", "/runners/1"),
    ("PUT", "/runners/1"),
    ("DELETE", "/runners/1"),
    ("GET", "/runners/1/managers"),
    ("POST", "/runners/1/reset_authentication_token"),
    ("GET", "/groups/10/runners"),
    ("GET", "/projects/100/runners"),
    ("GET", "/projects/100/deploy_tokens?active=maybe"),  # authentication before parameter validation
    ("POST", "/projects/100/deploy_tokens"),
    ("GET", "/groups/10/deploy_tokens/1"),
    ("DELETE", "/groups/10/deploy_tokens/1"),
    ("GET", SELF),
    ("DELETE", SELF),
    ("GET", "/personal_access_tokens/1"),
    ("POST", SELF_ROTATE),
    ("POST", "/personal_access_tokens/1/rotate"),
    ("GET", "/groups/10/access_tokens/1"),
    ("POST", "/groups/10/access_tokens/1/rotate"),
    ("POST", "/projects/100/access_tokens/self/rotate"),
    ("GET", "/metadata"),
    ("GET", "/version"),
]


@pytest.mark.parametrize(("method", "path"), USER_TOKEN_ENDPOINTS)
@pytest.mark.parametrize(("token", "body"), [("glpat-expired", EXPIRED), ("glpat-revoked", REVOKED)])
def test_dead_tokens_get_401_everywhere(world: World, method: str, path: str, token: str, body: dict[str, str]) -> None:
    response = world.client(token).request(method, path)
    assert (response.status_code, response.json()) == (401, body)
    counters = world.gl.token_counters
    counted = counters.expired_calls if token == "glpat-expired" else counters.revoked_calls
    assert counted == {f"{method} {path.split('?', maxsplit=1)[0]}": 1}


def test_counters_through_the_control_api_and_reset(world: World) -> None:
    add(world, "glpat-c0")
    rotated(world, "glpat-c0")
    rotate_self(world, "glpat-c0")
    world.client("glpat-expired").get("/user")
    with httpx.Client(base_url=world.gl.url + "/-/fake", timeout=5) as control:
        counters = control.get("/token_counters").json()
        assert counters["revoked_calls"] == {f"POST {SELF_ROTATE}": 1}
        assert (counters["expired_calls"], counters["revoked_total"], counters["expired_total"]) == (
            {"GET /user": 1},
            1,
            1,
        )
        (detection,) = counters["reuse_detections"]
        assert (detection["path"], detection["time"]) == (SELF_ROTATE, "2025-05-03T09:00:00.000Z")
        listed = control.get("/access_tokens").json()
        assert all(t["token"].startswith("glpat-\u2026") for t in listed)  # masked
        assert "glpat-c0" not in control.get("/access_tokens").text
        assert control.post("/reset").status_code == 204
        assert control.get("/token_counters").json()["reuse_detections"] == []


def test_control_api_creates_and_revokes_tokens(world: World) -> None:
    with httpx.Client(base_url=world.gl.url + "/-/fake", timeout=5) as control:
        created = control.post(
            "/access_tokens",
            json={"token": "glpat-ctl", "username": "robot", "scopes": ["api"], "expires_at": "2025-05-04"},
        )
        assert created.status_code == 201
        body = created.json()
        assert (body["expires_at"], body["expires_at_instant"], body["token"]) == (
            "2025-05-04",
            "2025-05-04T00:00:00.000Z",
            "glpat-\u2026-ctl",
        )
        assert world.client("glpat-ctl").get("/user").json()["username"] == "robot"
        bot = control.post("/access_tokens", json={"token": "glpat-ctlbot", "group_id": 10, "access_level": 30})
        assert (bot.json()["resource_type"], bot.json()["access_level"]) == ("group", 30)
        assert control.post(f"/access_tokens/{body['id']}/revoke").json()["revoked"] is True
        assert control.post("/access_tokens/999/revoke").status_code == 404
    assert world.client("glpat-ctl").get("/user").json() == REVOKED


# ----------------------------------------------------------------------------- group and project access tokens
def test_group_token_get_by_id(world: World) -> None:
    token = world.gl.add_group_access_token("glpat-g1", 10, access_level=30, name="ci", scopes=["read_api"])
    response = world.client("glpat-owner").get(f"/groups/10/access_tokens/{token.id}")
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["access_level"], body["resource_type"], body["resource_id"]) == ("ci", 30, "group", 10)
    assert (body["scopes"], body["expires_at"], body["active"]) == (["read_api"], None, True)
    assert world.client("glpat-gmaint").get(f"/groups/10/access_tokens/{token.id}").json() == UNAUTHORIZED
    assert world.client("glpat-admin").get(f"/groups/10/access_tokens/{token.id}").status_code == 200
    missing = world.client("glpat-owner").get("/groups/10/access_tokens/999")
    assert (missing.status_code, missing.json()) == (404, {"message": "404 group Access Token Not Found"})
    other_group = world.client("glpat-owner").get(f"/groups/11/access_tokens/{token.id}")
    assert other_group.json() == {"message": "404 group Access Token Not Found"}
    assert world.client("glpat-outsider").get("/groups/10/access_tokens/1").json() == {"message": "404 Group Not Found"}


def test_project_token_get_and_rotate_by_maintainer(world: World) -> None:
    token = world.gl.add_project_access_token("glpat-p1", 100, access_level=40, expires_at=IN_A_MONTH)
    path = f"/projects/100/access_tokens/{token.id}"
    assert world.client("glpat-pmaint").get(path).json()["resource_type"] == "project"
    assert world.client("glpat-dev").get(path).json() == UNAUTHORIZED
    missing = world.client("glpat-pmaint").get("/projects/100/access_tokens/999")
    assert missing.json() == {"message": "404 project Access Token Not Found"}
    response = world.client("glpat-pmaint").post(path + "/rotate", json={"expires_at": "2025-05-20"})
    assert response.status_code == 200
    body = response.json()
    assert (body["access_level"], body["expires_at"], body["token"][:6]) == (40, "2025-05-20", "glpat-")
    assert world.client("glpat-p1").get("/user").json() == REVOKED
    assert world.client(body["token"]).get(SELF).json()["user_id"] == token.user_id


def test_group_token_rotate_by_id_rules(world: World) -> None:
    token = world.gl.add_group_access_token("glpat-g2", 10, access_level=50)
    path = f"/groups/10/access_tokens/{token.id}/rotate"
    # maintainers of the group may not; an unknown id is 401 for them, 404 for an admin
    assert world.client("glpat-gmaint").post(path).json() == UNAUTHORIZED
    assert world.client("glpat-owner").post("/groups/10/access_tokens/999/rotate").json() == UNAUTHORIZED
    assert world.client("glpat-admin").post("/groups/10/access_tokens/999/rotate").status_code == 404
    assert world.client("glpat-owner").post("/groups/404/access_tokens/1/rotate").json() == {
        "message": "404 Group Not Found"
    }
    # a bot token may not rotate another token of its group
    world.gl.add_group_access_token("glpat-g3", 10, access_level=50)
    assert world.client("glpat-g3").post(path).json() == UNAUTHORIZED
    done = world.client("glpat-owner").post(path)
    assert (done.status_code, done.json()["access_level"], done.json()["expires_at"]) == (200, 50, "2025-05-10")
    again = world.client("glpat-owner").post(path)
    assert again.json() == {"message": "400 Bad request - Token already revoked"}


def test_rotating_a_token_above_the_callers_role_is_refused(world: World) -> None:
    token = world.gl.add_project_access_token("glpat-p-owner", 100, access_level=50)
    response = world.client("glpat-pmaint").post(f"/projects/100/access_tokens/{token.id}/rotate")
    assert (response.status_code, response.json()) == (
        400,
        {"message": "400 Bad request - Not eligible to rotate tokens with permissions not held by the user"},
    )
    assert world.client("glpat-p-owner").get(SELF).status_code == 200  # not revoked
    assert world.client("glpat-admin").post(f"/projects/100/access_tokens/{token.id}/rotate").status_code == 200


def test_group_token_self_rotation(world: World) -> None:
    token = world.gl.add_group_access_token("glpat-gs", 10, scopes=["self_rotate", "read_api"])
    response = world.client("glpat-gs").post("/groups/10/access_tokens/self/rotate", json={"expires_at": "2025-05-31"})
    assert response.status_code == 200
    body = response.json()
    assert (body["access_level"], body["expires_at"], body["scopes"]) == (40, "2025-05-31", ["self_rotate", "read_api"])
    stored = world.gl.access_token(body["token"])
    assert stored is not None and stored.previous_personal_access_token_id == token.id
    # reuse of the old bot token on its rotate path
    assert world.client("glpat-gs").post("/groups/10/access_tokens/self/rotate").json() == REVOKED
    assert world.client(body["token"]).get(SELF).json() == REVOKED
    assert world.gl.token_counters.reuse_detections[0].revoked_ids == [body["id"]]


def test_group_token_self_rotation_errors(world: World) -> None:
    world.gl.add_group_access_token("glpat-gs2", 10)
    # a human's token: 405
    assert world.client("glpat-owner").post("/groups/10/access_tokens/self/rotate").status_code == 405
    # a subgroup the bot sees through inheritance, but whose token it is not: 401
    assert world.client("glpat-gs2").post("/groups/11/access_tokens/self/rotate").json() == UNAUTHORIZED
    assert world.client("glpat-gs2").post("/projects/200/access_tokens/self/rotate").json() == UNAUTHORIZED
    assert world.client("glpat-gs2").post("/groups/10/access_tokens/self/rotate", json={"expires_at": "x"}).json() == {
        "error": "expires_at is invalid"
    }
    world.gl.add_group_access_token("glpat-gs3", 10, scopes=["read_api"])
    assert (
        world.client("glpat-gs3").post("/groups/10/access_tokens/self/rotate").json()["error"] == "insufficient_scope"
    )


def test_group_token_self_rotation_before_17_9(world: World) -> None:
    world.gl.add_group_access_token("glpat-gs4", 10)
    world.gl.instance.version = "17.8.1-ee"
    # the path falls to :token_id/rotate with token_id "self", which a bot may not use
    assert world.client("glpat-gs4").post("/groups/10/access_tokens/self/rotate").json() == UNAUTHORIZED
    assert world.client("glpat-gs4").get(SELF).status_code == 200  # not rotated, not revoked


# ----------------------------------------------------------------------------- python-gitlab
def test_python_gitlab_self_information_and_rotation(world: World) -> None:
    add(world, "glpat-pg", name="pg")
    gl = gl_client(world, "glpat-pg")
    me = gl.personal_access_tokens.get("self")
    assert (me.name, me.active, me.expires_at, me.last_used_ips) == ("pg", True, "2025-06-03", ["127.0.0.1"])
    result = me.rotate(self_rotate=True, expires_at="2025-05-25")
    assert (me.token.startswith("glpat-"), me.expires_at, me.name) == (True, "2025-05-25", "pg")
    assert result["id"] == me.id != world.gl.access_token("glpat-pg").id  # type: ignore[union-attr]
    with pytest.raises(gitlab.GitlabAuthenticationError):
        gl.personal_access_tokens.get("self")  # the old token is revoked
    fresh = gl_client(world, me.token)
    assert fresh.personal_access_tokens.get("self").id == me.id
    rotated_again = fresh.personal_access_tokens.rotate("self")
    assert rotated_again["expires_at"] == "2025-05-10"


def test_python_gitlab_reuse_detection(world: World) -> None:
    add(world, "glpat-pg2")
    old = gl_client(world, "glpat-pg2")
    new_token = old.personal_access_tokens.rotate("self")["token"]
    with pytest.raises(gitlab.GitlabAuthenticationError):
        old.personal_access_tokens.rotate("self")  # a retry with the old token
    with pytest.raises(gitlab.GitlabAuthenticationError):
        gl_client(world, new_token).personal_access_tokens.get("self")
    assert len(world.gl.token_counters.reuse_detections) == 1


def test_python_gitlab_rotate_by_id_and_group_tokens(world: World) -> None:
    target = add(world, "glpat-pg3")
    owner = gl_client(world, "glpat-owner")
    body = owner.personal_access_tokens.rotate(target.id, expires_at="2025-06-10")
    assert (body["expires_at"], body["id"] != target.id) == ("2025-06-10", True)
    with pytest.raises(gitlab.GitlabRotateError) as refused:
        owner.personal_access_tokens.rotate(target.id)
    assert (refused.value.response_code, refused.value.error_message) == (
        400,
        "400 Bad request - Token already revoked",
    )

    token = world.gl.add_group_access_token("glpat-pg-bot", 10, access_level=40, name="bot")
    group = owner.groups.get(10, lazy=True)
    fetched = group.access_tokens.get(token.id)
    assert (fetched.name, fetched.access_level) == ("bot", 40)
    fetched.rotate()
    assert fetched.token.startswith("glpat-") and fetched.id != token.id
    bot = gl_client(world, fetched.token)
    by_itself = bot.groups.get(10, lazy=True).access_tokens.rotate("self")
    assert by_itself["access_level"] == 40
    assert gl_client(world, by_itself["token"]).personal_access_tokens.get("self").active is True
