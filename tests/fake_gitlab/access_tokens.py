"""Access tokens of the fake GitLab: self-information, rotation, token families and reuse detection.

GitLab's documentation, by short name:

- personal access tokens API: https://docs.gitlab.com/api/personal_access_tokens/ (``GET /personal_access_tokens``
  with its filters, ``GET .../self``,
  ``POST .../self/rotate``, ``POST .../:id/rotate``, and its "automatic reuse detection" section)
- group / project access tokens API: https://docs.gitlab.com/api/group_access_tokens/ ,
  https://docs.gitlab.com/api/project_access_tokens/
- token expiry: https://docs.gitlab.com/user/profile/personal_access_tokens/#access-token-expiration

Rules kept here: a rotation revokes the old token at once and creates a ``glpat-`` token with a new id, the same
name, description and scopes, linked to the old one (``previous_personal_access_token_id``); without ``expires_at``
the new token gets today + 7 days when ``Settings.require_personal_access_token_expiry`` is true (the default),
none otherwise; a date beyond today + 365 days is refused when expiry is required. Dates are UTC dates of the fake's
clock. A token dies at 00:00 UTC of its ``expires_at``. Reuse detection lives in authentication
(:meth:`tests.fake_gitlab.api.Ctx.authenticate`): a revoked token presented on a path ending in
``access_tokens/<id or self>/rotate`` revokes its active descendants, and the answer is the usual 401.

Testing expiry in seconds: GitLab's expiry is a date, so move the fake's clock instead of shortening lifetimes, e.g.
``gl.set_clock_before_expiry(token, 30)`` puts the clock 30 s before the token's 00:00 UTC expiry instant; the
HTTP ``Date`` header follows the fake's clock too.
"""

from __future__ import annotations

import copy
import re
import secrets
import threading
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from . import api
from .api import ApiError, Ctx, Response
from .state import (
    MAINTAINER,
    OWNER,
    TOKEN_ALPHABET,
    AccessToken,
    Clock,
    Group,
    Project,
    State,
    TokenCounters,
    User,
    iso,
)
from .versions import (
    PAT_DELETE_SELF,
    PAT_GET_BY_ID,
    PAT_SELF,
    PAT_SELF_ROTATE,
    RESOURCE_SELF_ROTATE,
    RESOURCE_TOKEN_GET,
    ROTATE_BY_ID,
    ROTATE_EXPIRES_AT,
    Instance,
)

TOKEN_PREFIX = "glpat-"
ROTATION_DEFAULT_LIFETIME = timedelta(days=7)  # RotateService::EXPIRATION_PERIOD
MAX_LIFETIME = timedelta(days=365)  # MAX_PERSONAL_ACCESS_TOKEN_LIFETIME_IN_DAYS
SELF_ROTATE_SCOPES = ("api", "self_rotate")
NOT_A_PAT = "This endpoint requires token type to be a personal access token"
NOT_ELIGIBLE = "Not eligible to rotate tokens with permissions not held by the user"
ACCESS_LEVELS = (10, 15, 20, 30, 40, 50)  # guest, planner, reporter, developer, maintainer, owner
DATE_RE = re.compile(r"\s*(\d{4}-\d{2}-\d{2})(?:[T ].*)?\s*")


# ----------------------------------------------------------------------------- model
def new_token_value(state: State) -> str:
    while True:
        token = TOKEN_PREFIX + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(20))
        if token not in state.access_tokens:
            return token


def today(state: State) -> date:
    return state.clock.now().date()  # the clock is UTC


def rotate(state: State, old: AccessToken, expires_at: date | None) -> AccessToken:
    """``PersonalAccessTokens::RotateService``: validate, revoke ``old``, create its successor; 400 on refusal.

    Checks come before any change, so a refused rotation leaves the old token working (GitLab rolls back)."""
    if old.revoked:
        raise api.bad_request("Token already revoked")
    required = state.settings.require_personal_access_token_expiry
    if expires_at is None and required:
        expires_at = today(state) + ROTATION_DEFAULT_LIFETIME
    limit = today(state) + MAX_LIFETIME
    if required and expires_at is not None and expires_at > limit:
        raise api.bad_request(f"Expiration date must be before {limit.isoformat()}")
    old.revoked = True
    new = state.add_access_token(
        new_token_value(state),
        state.users[old.user_id],
        scopes=list(old.scopes),
        expires_at=expires_at,
        name=old.name,
        description=old.description,
        previous_id=old.id,
    )
    new.resource_type, new.resource_id, new.access_level = old.resource_type, old.resource_id, old.access_level
    return new


def add_resource_token(
    state: State,
    token: str,
    *,
    resource: Group | Project,
    access_level: int,
    scopes: list[str],
    expires_at: datetime | date | None,
    name: str | None,
    description: str | None,
) -> AccessToken:
    """A group or project access token: a bot user, a member of the resource with ``access_level``, and its PAT."""
    if access_level not in ACCESS_LEVELS:
        raise ValueError(f"access_level must be one of {ACCESS_LEVELS}")
    kind = "group" if isinstance(resource, Group) else "project"
    bot = state.add_user(f"{kind}_{resource.id}_bot_{secrets.token_hex(16)}", name=name or f"{kind} bot", bot=True)
    if access_level >= OWNER:
        resource.owners.add(bot.id)
    elif access_level >= MAINTAINER:
        resource.maintainers.add(bot.id)
    elif access_level >= 30:
        resource.developers.add(bot.id)
    at = state.add_access_token(token, bot, scopes=scopes, expires_at=expires_at, name=name, description=description)
    at.resource_type, at.resource_id, at.access_level = kind, resource.id, access_level
    return at


def family(state: State, token: AccessToken) -> list[AccessToken]:
    """Every token of ``token``'s family (its ancestors and descendants), oldest first."""
    by_id = {t.id: t for t in state.access_tokens.values() if t.kind == "personal"}
    root = token
    while root.previous_personal_access_token_id in by_id:
        root = by_id[root.previous_personal_access_token_id]
    members, pending = [root], [root.id]
    while pending:
        parent = pending.pop()
        for t in by_id.values():
            if t.previous_personal_access_token_id == parent:
                members.append(t)
                pending.append(t.id)
    return sorted(members, key=lambda t: t.id)


# ----------------------------------------------------------------------------- entities
def token_entity(state: State, t: AccessToken) -> dict[str, Any]:
    """Entity ``PersonalAccessToken``: ``expires_at`` a date string, ``active`` = neither revoked nor expired."""
    return {
        "id": t.id,
        "name": t.name,
        "revoked": t.revoked,
        "created_at": iso(t.created_at),
        "description": t.description,
        "scopes": list(t.scopes),
        "user_id": t.user_id,
        "last_used_at": iso(t.last_used_at),
        "active": t.active(state.clock.now()),
        "expires_at": t.expires_at.isoformat() if t.expires_at else None,
    }


def resource_token_entity(state: State, t: AccessToken) -> dict[str, Any]:
    """Entity ``ResourceAccessToken``: the token fields plus the bot's role and its group or project."""
    return {
        **token_entity(state, t),
        "access_level": t.access_level,
        "resource_type": t.resource_type,
        "resource_id": t.resource_id,
    }


def control_json(state: State, t: AccessToken) -> dict[str, Any]:
    """The control API's view: the entity plus the family link and the masked value (never the token)."""
    return {
        **resource_token_entity(state, t),
        "kind": t.kind,
        "token": t.masked_token,
        "previous_personal_access_token_id": t.previous_personal_access_token_id,
        "last_used_ips": list(t.last_used_ips),
        "expires_at_instant": iso(t.expires_at_instant),
    }


# ----------------------------------------------------------------------------- parameters
def expires_at_param(ctx: Ctx, *, declared: bool = True) -> date | None:
    """Optional Grape ``Date`` parameter ``expires_at``; ``declared=False`` (an older release) ignores it."""
    raw = ctx.params.data.get("expires_at")
    if not declared or raw is None or raw == "":
        return None
    match = DATE_RE.fullmatch(raw) if isinstance(raw, str) else None
    try:
        if match is None:
            raise ValueError(raw)
        return date.fromisoformat(match[1])
    except ValueError:
        ctx.params.errors.append("expires_at is invalid")
        return None


def _caller_token(ctx: Ctx) -> AccessToken:
    assert ctx.access_token is not None
    return ctx.access_token


def _with_token(body: dict[str, Any], token: AccessToken) -> dict[str, Any]:
    return {**body, "token": token.token}


# ----------------------------------------------------------------------------- personal access tokens
def get_self(ctx: Ctx, m: re.Match[str]) -> Response:
    """``GET /personal_access_tokens/self``: any scope; 400 for a token that is not a PAT."""
    ctx.authenticate(any_scope=True)
    token = _caller_token(ctx)
    if token.kind != "personal":
        raise api.bad_request(NOT_A_PAT)
    return Response(200, {**token_entity(ctx.state, token), "last_used_ips": list(token.last_used_ips)})


def delete_self(ctx: Ctx, m: re.Match[str]) -> Response:
    """``DELETE /personal_access_tokens/self``: any scope; revokes the calling token."""
    ctx.authenticate(any_scope=True)
    token = _caller_token(ctx)
    if token.kind != "personal":
        raise api.bad_request(NOT_A_PAT)
    token.revoked = True
    return Response(204)


def get_by_id(ctx: Ctx, m: re.Match[str]) -> Response:
    """``GET /personal_access_tokens/:id``: own tokens; others 401; an administrator 404 for an unknown id."""
    user = ctx.authenticate()
    raw = api.path_id(ctx, m["id"])
    token = ctx.state.access_token_by_id(int(raw))
    if token is not None and (token.user_id == user.id or user.admin):
        return Response(200, token_entity(ctx.state, token))
    raise api.not_found() if user.admin else api.unauthorized()


def list_tokens(ctx: Ctx, m: re.Match[str]) -> Response:
    """``GET /personal_access_tokens`` (``PersonalAccessTokensFinder``): a user's own tokens, every user's for an
    administrator; filters ``user_id`` (another user's: 401, unless an administrator; an unknown one for an
    administrator: 404), ``state`` (active/inactive), ``revoked``, ``search`` (name contains, case-insensitive);
    by id, paginated."""
    user = ctx.authenticate()
    user_id = ctx.params.integer("user_id")
    state_filter = ctx.params.string("state", values=("active", "inactive"))
    revoked = ctx.params.boolean("revoked")
    search = ctx.params.string("search")
    ctx.params.check()
    page, per_page = api._page_params(ctx)
    state = ctx.state
    if user.admin:
        if user_id is not None and user_id not in state.users:
            raise api.not_found()
        owner = user_id
    else:
        if user_id is not None and user_id != user.id:
            raise api.unauthorized()
        owner = user.id
    now = state.clock.now()
    items = sorted((t for t in state.access_tokens.values() if t.kind == "personal"), key=lambda t: t.id)
    if owner is not None:
        items = [t for t in items if t.user_id == owner]
    if state_filter is not None:
        items = [t for t in items if t.active(now) == (state_filter == "active")]
    if revoked is not None:
        items = [t for t in items if t.revoked == revoked]
    if search:
        items = [t for t in items if search.lower() in (t.name or "").lower()]
    return api.paginate(ctx, items, page, per_page, lambda t: token_entity(state, t))


def rotate_self(ctx: Ctx, m: re.Match[str]) -> Response:
    """``POST /personal_access_tokens/self/rotate``: scope ``api`` or ``self_rotate``; 200 with the new token."""
    ctx.authenticate(SELF_ROTATE_SCOPES)
    expires_at = expires_at_param(ctx)
    ctx.params.check()
    token = _caller_token(ctx)
    if token.kind != "personal":
        raise ApiError(405, {"message": "405 Method Not Allowed"})
    new = rotate(ctx.state, token, expires_at)
    return Response(200, _with_token(token_entity(ctx.state, new), new))


def rotate_by_id(ctx: Ctx, m: re.Match[str]) -> Response:
    """``POST /personal_access_tokens/:id/rotate``: scope ``api``, the owner or an administrator; works on an
    expired token; 401 otherwise (404 for an administrator and an unknown id)."""
    user = ctx.authenticate()
    raw = api.path_id(ctx, m["id"])
    expires_at = expires_at_param(ctx, declared=ctx.state.instance.at_least(ROTATE_EXPIRES_AT))
    ctx.params.check()
    token = ctx.state.access_token_by_id(int(raw))
    if token is None or not (token.user_id == user.id or user.admin):
        raise api.not_found() if user.admin else api.unauthorized()
    new = rotate(ctx.state, token, expires_at)
    return Response(200, _with_token(token_entity(ctx.state, new), new))


# ----------------------------------------------------------------------------- group and project access tokens
def _resource(ctx: Ctx, user: User, kind: str, raw: str) -> Group | Project:
    """The group or project of the path, or 404 ``Group``/``Project Not Found`` (invisible counts as unknown)."""
    state = ctx.state
    if kind == "groups":
        group = state.find_group(unquote(raw))
        visible = group is not None and (user.admin or state.group_access(user, group) > 0 or _bot_of(user, group))
        if group is None or not visible:
            raise api.not_found("Group")
        return group
    project = state.find_project(unquote(raw))
    visible = project is not None and (user.admin or state.project_access(user, project) > 0 or _bot_of(user, project))
    if project is None or not visible:
        raise api.not_found("Project")
    return project


def _bot_of(user: User, resource: Group | Project) -> bool:
    """A bot below developer level is in no membership set the fake keeps, yet sees its own resource."""
    return user.bot and user.username.startswith(f"{_kind(resource)}_{resource.id}_bot_")


def _kind(resource: Group | Project) -> str:
    return "group" if isinstance(resource, Group) else "project"


def _can_manage(ctx: Ctx, user: User, resource: Group | Project) -> bool:
    """``read_``/``manage_resource_access_tokens``: group Owner, project Maintainer, administrators; never bots."""
    if user.bot:
        return False
    if user.admin:
        return True
    if isinstance(resource, Group):
        return ctx.state.group_access(user, resource) >= OWNER
    return ctx.state.project_access(user, resource) >= MAINTAINER


def _user_level(ctx: Ctx, user: User, resource: Group | Project) -> int:
    if isinstance(resource, Group):
        return ctx.state.group_access(user, resource)
    return ctx.state.project_access(user, resource)


def _find_resource_token(ctx: Ctx, resource: Group | Project, raw_id: str | int) -> AccessToken | None:
    """A token of one of the resource's bots, by id, revoked or not (``PersonalAccessTokensFinder#find_by_id``)."""
    if isinstance(raw_id, str) and not raw_id.isdigit():
        return None
    token = ctx.state.access_token_by_id(int(raw_id))
    if token is None or token.resource_type != _kind(resource) or token.resource_id != resource.id:
        return None
    return token


def get_resource_token(ctx: Ctx, m: re.Match[str]) -> Response:
    """``GET /groups|projects/:id/access_tokens/:token_id``: Owner (group) / Maintainer (project), else 401."""
    user = ctx.authenticate()
    resource = _resource(ctx, user, m["kind"], m["id"])
    if not _can_manage(ctx, user, resource):
        raise api.unauthorized()
    token = _find_resource_token(ctx, resource, m["token_id"])
    if token is None:
        raise ApiError(404, {"message": f"404 {_kind(resource)} Access Token Not Found"})
    return Response(200, resource_token_entity(ctx.state, token))


def rotate_resource_token(ctx: Ctx, m: re.Match[str]) -> Response:
    """``POST /groups|projects/:id/access_tokens/:token_id/rotate``: a manager whose role covers the token's."""
    user = ctx.authenticate()
    expires_at = expires_at_param(ctx, declared=ctx.state.instance.at_least(ROTATE_EXPIRES_AT))
    ctx.params.check()
    resource = _resource(ctx, user, m["kind"], m["id"])
    token = _find_resource_token(ctx, resource, m["token_id"]) if _can_manage(ctx, user, resource) else None
    if token is None:
        raise api.not_found() if user.admin else api.unauthorized()
    if token.revoked:
        raise api.bad_request("Token already revoked")
    if not user.admin and (token.access_level or 0) > _user_level(ctx, user, resource):
        raise api.bad_request(NOT_ELIGIBLE)
    new = rotate(ctx.state, token, expires_at)
    return Response(200, _with_token(resource_token_entity(ctx.state, new), new))


def rotate_resource_self(ctx: Ctx, m: re.Match[str]) -> Response:
    """``POST /groups|projects/:id/access_tokens/self/rotate``: the bot's own token, ``api`` or ``self_rotate``."""
    user = ctx.authenticate(SELF_ROTATE_SCOPES)
    expires_at = expires_at_param(ctx)
    ctx.params.check()
    caller = _caller_token(ctx)
    if caller.kind != "personal" or not user.bot:
        raise ApiError(405, {"message": "405 Method Not Allowed"})
    resource = _resource(ctx, user, m["kind"], m["id"])
    token = _find_resource_token(ctx, resource, caller.id)
    if token is None:
        raise api.unauthorized()
    new = rotate(ctx.state, token, expires_at)
    return Response(200, _with_token(resource_token_entity(ctx.state, new), new))


_RESOURCE = r"/(?P<kind>groups|projects)/(?P<id>[^/]+)/access_tokens"
# Order matters: the ``self`` routes come first; on a release without them the ``:id`` routes take the path.
ROUTES: list[tuple[str, str, api.Handler, tuple[int, int] | None]] = [
    ("GET", r"/personal_access_tokens", list_tokens, None),
    ("GET", r"/personal_access_tokens/self", get_self, PAT_SELF),
    ("DELETE", r"/personal_access_tokens/self", delete_self, PAT_DELETE_SELF),
    ("POST", r"/personal_access_tokens/self/rotate", rotate_self, PAT_SELF_ROTATE),
    ("GET", r"/personal_access_tokens/(?P<id>[^/]+)", get_by_id, PAT_GET_BY_ID),
    ("POST", r"/personal_access_tokens/(?P<id>[^/]+)/rotate", rotate_by_id, ROTATE_BY_ID),
    ("POST", _RESOURCE + r"/self/rotate", rotate_resource_self, RESOURCE_SELF_ROTATE),
    ("GET", _RESOURCE + r"/(?P<token_id>[^/]+)", get_resource_token, RESOURCE_TOKEN_GET),
    ("POST", _RESOURCE + r"/(?P<token_id>[^/]+)/rotate", rotate_resource_token, ROTATE_BY_ID),
]

for _method, _pattern, _handler, _since in ROUTES:
    api.register(_method, _pattern, _handler, since=_since)


# ----------------------------------------------------------------------------- Python API (mixed into FakeGitLab)
class AccessTokensFacade:
    """The access-token part of :class:`tests.fake_gitlab.FakeGitLab` (copies out, mutations under the lock)."""

    _lock: threading.RLock
    _state: State
    clock: Clock

    @property
    def instance(self) -> Instance:
        """The live instance description: ``version`` (gates features, see :mod:`.versions`), KAS, edition."""
        return self._state.instance

    def access_tokens(self) -> list[AccessToken]:
        """Copies of every access token (revoked and expired included), by id."""
        with self._lock:
            return [copy.deepcopy(t) for t in sorted(self._state.access_tokens.values(), key=lambda t: t.id)]

    def access_token(self, token: str | int) -> AccessToken | None:
        """A copy of the token with this value or id."""
        with self._lock:
            found = self._find(token)
            return copy.deepcopy(found) if found else None

    def token_family(self, token: str | int) -> list[AccessToken]:
        """Copies of the token's family (every rotation before and after it), oldest first."""
        with self._lock:
            return [copy.deepcopy(t) for t in family(self._state, self._get(token))]

    def newest_in_family(self, token: str | int) -> AccessToken:
        """The last token rotated from this one (itself if never rotated)."""
        return self.token_family(token)[-1]

    def set_access_token_scopes(self, token: str | int, scopes: list[str]) -> None:
        """Change a token's scopes in place, as an admin editing it would (a token without ``read_api``, say)."""
        with self._lock:
            self._get(token).scopes = list(scopes)

    def revoke_access_token(self, token: str | int) -> None:
        """Revoke out of band, as a user would in GitLab's settings page (no family revocation)."""
        with self._lock:
            self._get(token).revoked = True

    def add_group_access_token(
        self,
        token: str,
        group_id: int,
        *,
        access_level: int = MAINTAINER,
        scopes: list[str] | None = None,
        expires_at: datetime | date | None = None,
        name: str | None = None,
        description: str | None = None,
    ) -> AccessToken:
        """A group access token (a new bot user, member of the group); default scope ``api``."""
        with self._lock:
            return add_resource_token(
                self._state,
                token,
                resource=self._state.groups[group_id],
                access_level=access_level,
                scopes=scopes or ["api"],
                expires_at=expires_at,
                name=name,
                description=description,
            )

    def add_project_access_token(
        self,
        token: str,
        project_id: int,
        *,
        access_level: int = MAINTAINER,
        scopes: list[str] | None = None,
        expires_at: datetime | date | None = None,
        name: str | None = None,
        description: str | None = None,
    ) -> AccessToken:
        """A project access token (a new bot user, member of the project); default scope ``api``."""
        with self._lock:
            return add_resource_token(
                self._state,
                token,
                resource=self._state.projects[project_id],
                access_level=access_level,
                scopes=scopes or ["api"],
                expires_at=expires_at,
                name=name,
                description=description,
            )

    @property
    def token_counters(self) -> TokenCounters:
        """A copy of the counters: calls with a revoked / an expired token by ``"METHOD path"``, and every reuse
        detection (which revoked token, on which path, which descendants it revoked). ``reset()`` clears them."""
        with self._lock:
            return self._state.token_counters.snapshot()

    def access_token_expiry(self, token: str | int) -> datetime | None:
        """The instant the token dies: 00:00 UTC of its ``expires_at`` date."""
        with self._lock:
            return self._get(token).expires_at_instant

    def set_clock_before_expiry(self, token: str | int, seconds: float) -> datetime:
        """Move the fake's clock to ``seconds`` before the token's expiry instant; returns the new time."""
        instant = self.access_token_expiry(token)
        if instant is None:
            raise ValueError("the token has no expiry date")
        self.clock.set(instant - timedelta(seconds=seconds))
        return self.clock.now()

    def _find(self, token: str | int) -> AccessToken | None:
        if isinstance(token, int):
            return self._state.access_token_by_id(token)
        return self._state.access_tokens.get(token)

    def _get(self, token: str | int) -> AccessToken:
        found = self._find(token)
        if found is None:
            raise KeyError("no such access token")
        return found


# ----------------------------------------------------------------------------- control API
def control(fake: Any, method: str, route: str, body: dict[str, Any]) -> Response | None:
    """``/-/fake`` routes for tokens and the instance; ``None`` when the route is not one of them.

    | ``GET /-/fake/access_tokens`` | every token, masked |
    | ``POST /-/fake/access_tokens`` | ``{"token", "username", "scopes"?, "expires_at"? (date), "name"?,
      "description"?, "kind"?, "group_id"|"project_id"?, "access_level"?}``; a missing user is created |
    | ``POST /-/fake/access_tokens/{id}/revoke`` | revoke out of band |
    | ``GET /-/fake/token_counters`` | the counters of :attr:`AccessTokensFacade.token_counters` |
    | ``GET/PUT /-/fake/instance`` | version, revision, KAS fields, ``enterprise`` |
    """
    state: State = fake._state
    if route == "/access_tokens" and method == "GET":
        with fake._lock:
            tokens = sorted(state.access_tokens.values(), key=lambda t: t.id)
            return Response(200, [control_json(state, t) for t in tokens])
    if route == "/access_tokens" and method == "POST":
        with fake._lock:
            created = _control_create(fake, state, body)
            return Response(201, control_json(state, created))
    match = re.fullmatch(r"/access_tokens/(\d+)/revoke", route)
    if match and method == "POST":
        with fake._lock:
            token = state.access_token_by_id(int(match[1]))
            if token is None:
                return Response(404, {"message": "404 Access Token Not Found"})
            token.revoked = True
            return Response(200, control_json(state, token))
    if route == "/token_counters" and method == "GET":
        return Response(200, fake.token_counters.as_dict())
    if route == "/instance" and method in ("GET", "PUT"):
        with fake._lock:
            if method == "PUT":
                state.instance.update(body)
            return Response(200, {**state.instance.as_dict(), "is_enterprise": state.instance.is_enterprise})
    return None


def _control_create(fake: Any, state: State, body: dict[str, Any]) -> AccessToken:
    value = str(body["token"])
    expires = date.fromisoformat(str(body["expires_at"])) if body.get("expires_at") else None
    scopes = [str(s) for s in body["scopes"]] if body.get("scopes") is not None else None
    name = str(body["name"]) if body.get("name") is not None else None
    description = str(body["description"]) if body.get("description") is not None else None
    if body.get("group_id") is not None or body.get("project_id") is not None:
        add = fake.add_group_access_token if body.get("group_id") is not None else fake.add_project_access_token
        resource_id = int(body.get("group_id") or body["project_id"])
        token: AccessToken = add(
            value,
            resource_id,
            access_level=int(body.get("access_level", MAINTAINER)),
            scopes=scopes,
            expires_at=expires,
            name=name,
            description=description,
        )
        return token
    username = str(body["username"])
    user = next((u for u in state.users.values() if u.username == username), None)
    if user is None:
        user = state.add_user(username, admin=bool(body.get("admin", False)))
    return state.add_access_token(
        value,
        user,
        scopes=scopes,
        expires_at=expires,
        name=name,
        description=description,
        kind=str(body.get("kind", "personal")),
    )
