"""Deploy tokens (https://docs.gitlab.com/api/deploy_tokens/) and the container registry's token check.

Project and group deploy tokens: created with ``name``, ``scopes``, optional ``expires_at`` and ``username``; the
``gldt-`` token is in the creation reply only. A token with an expiry date dies at 00:00 UTC of that date, and
listings show ``revoked`` and ``expired``. Projects need Maintainer for every call; groups need Maintainer to read
and Owner to create or revoke (https://docs.gitlab.com/user/project/deploy_tokens/).

``GET /jwt/auth`` is the token endpoint GitLab's container registry sends clients to
(https://docs.gitlab.com/administration/packages/container_registry/ , Docker's token authentication): HTTP basic
auth with a deploy token's username and token; 401 for credentials GitLab refuses, else 200 with a token whose
``access`` lists the actions granted on the requested repository (none without ``read_registry``).

Test knob, not GitLab behaviour: ``Settings.deploy_token_lifetime_seconds`` makes every token created with an
expiry date expire that many seconds after its creation instead, so that e2e tests can renew in seconds.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

from . import api
from .api import Ctx, Response
from .state import MAINTAINER, OWNER, TOKEN_ALPHABET, Group, Project, State, User, iso, parse_time, to_sentence

SCOPES = (
    "read_repository",
    "read_registry",
    "write_registry",
    "read_package_registry",
    "write_package_registry",
    "read_virtual_registry",
    "write_virtual_registry",
)
TOKEN_PREFIX = "gldt-"
USERNAME_RE = re.compile(r"\A[a-zA-Z0-9.+_-]+\Z")
MAX_USERNAME = 255


@dataclass
class DeployToken:
    id: int
    name: str
    username: str
    scopes: list[str]
    token: str = field(repr=False)
    created_at: datetime
    expires_at: datetime | None
    project_id: int | None = None
    group_id: int | None = None
    revoked: bool = False

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def active(self, now: datetime) -> bool:
        return not self.revoked and not self.expired(now)

    def json(self, now: datetime) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "username": self.username,
            "expires_at": iso(self.expires_at),
            "revoked": self.revoked,
            "expired": self.expired(now),
            "scopes": list(self.scopes),
        }


def expiry_for(state: State, expires_at: datetime, now: datetime) -> datetime:
    """00:00 UTC of the requested date, or the shortened test lifetime."""
    lifetime = state.settings.deploy_token_lifetime_seconds
    if lifetime is not None:
        return now + timedelta(seconds=lifetime)
    day = expires_at.astimezone(UTC).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def create(
    state: State,
    *,
    name: str,
    scopes: list[str],
    username: str | None,
    expires_at: datetime | None,
    project: Project | None = None,
    group: Group | None = None,
) -> DeployToken:
    now = state.clock.now()
    token_id = state.next_deploy_token_id
    state.next_deploy_token_id += 1
    token = TOKEN_PREFIX + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(20))
    dt = DeployToken(
        id=token_id,
        name=name,
        username=username or f"gitlab+deploy-token-{token_id}",
        scopes=list(scopes),
        token=token,
        created_at=now,
        expires_at=expiry_for(state, expires_at, now) if expires_at is not None else None,
        project_id=project.id if project else None,
        group_id=group.id if group else None,
    )
    state.deploy_tokens[token_id] = dt
    return dt


def model_errors(username: str | None) -> list[str]:
    """``DeployToken`` validations on the username (https://docs.gitlab.com/api/deploy_tokens/)."""
    if username is None or username == "":
        return []
    errors = []
    if len(username) > MAX_USERNAME:
        errors.append(f"Username is too long (maximum is {MAX_USERNAME} characters)")
    if not USERNAME_RE.match(username):
        errors.append("Username can contain only letters, digits, '_', '-', '+', and '.'")
    return errors


# ----------------------------------------------------------------------------- REST handlers
def _scope_of(ctx: Ctx, m: re.Match[str]) -> tuple[User, Project | None, Group | None]:
    """(user, project, group) for the path's ``:id``, or 404 as GitLab answers for either kind."""
    user = ctx.authenticate()
    raw = m["id"]
    if m["kind"] == "projects":
        project = api._project_or_404(ctx, user, raw)
        return user, project, None
    group = api._group_or_404(ctx, user, raw)
    return user, None, group


def _level(state: State, user: User, project: Project | None, group: Group | None) -> int:
    if user.admin:
        return OWNER
    if project is not None:
        return state.project_access(user, project)
    assert group is not None
    return state.group_access(user, group)


def _owned(dt: DeployToken, project: Project | None, group: Group | None) -> bool:
    if project is not None:
        return dt.project_id == project.id
    return group is not None and dt.group_id == group.id


def list_tokens(ctx: Ctx, m: re.Match[str]) -> Response:
    """``GET /projects/:id/deploy_tokens``, ``GET /groups/:id/deploy_tokens`` (Maintainer+), ``active`` filter."""
    ctx.authenticate()  # before parameter validation, as Grape's before block
    active = ctx.params.boolean("active")
    ctx.params.check()
    page, per_page = api._page_params(ctx)
    user, project, group = _scope_of(ctx, m)
    if _level(ctx.state, user, project, group) < MAINTAINER:
        raise api.forbidden()
    now = ctx.state.clock.now()
    items = [dt for dt in ctx.state.deploy_tokens.values() if _owned(dt, project, group)]
    if active is not None:
        items = [dt for dt in items if dt.active(now) == active]
    return api.paginate(ctx, items, page, per_page, lambda dt: dt.json(now))


def _find(ctx: Ctx, m: re.Match[str], project: Project | None, group: Group | None) -> DeployToken:
    raw = m["token_id"]
    dt = ctx.state.deploy_tokens.get(int(raw)) if raw.isdigit() else None
    if dt is None or not _owned(dt, project, group):
        raise api.ApiError(404, {"message": "404 Not found"})
    return dt


def get_token(ctx: Ctx, m: re.Match[str]) -> Response:
    user, project, group = _scope_of(ctx, m)
    if _level(ctx.state, user, project, group) < MAINTAINER:
        raise api.forbidden()
    return api.Response(200, _find(ctx, m, project, group).json(ctx.state.clock.now()))


def create_token(ctx: Ctx, m: re.Match[str]) -> Response:
    """``POST .../deploy_tokens``: 201 with the token, the only time it is shown."""
    ctx.authenticate()  # before parameter validation, as Grape's before block
    p = ctx.params
    name = p.string("name", required=True)
    scopes = p.str_list("scopes")
    if scopes is None and not p.present("scopes"):
        p.errors.append("scopes is missing")
    elif scopes is not None and (not scopes or any(s not in SCOPES for s in scopes)):
        p.errors.append("scopes does not have a valid value")
    raw_expiry = p.string("expires_at")
    expires_at = None
    if raw_expiry:
        try:
            expires_at = parse_time(raw_expiry)
        except ValueError:
            p.errors.append("expires_at is invalid")
    username = p.string("username")
    p.check()
    user, project, group = _scope_of(ctx, m)
    needed = MAINTAINER if project is not None else OWNER
    if _level(ctx.state, user, project, group) < needed:
        raise api.forbidden()
    errors = model_errors(username)
    if errors:
        raise api.ApiError(400, {"message": to_sentence(errors)})
    assert name is not None and scopes is not None
    dt = create(
        ctx.state,
        name=name,
        scopes=scopes,
        username=username,
        expires_at=expires_at,
        project=project,
        group=group,
    )
    return api.Response(201, {**dt.json(ctx.state.clock.now()), "token": dt.token})


def revoke_token(ctx: Ctx, m: re.Match[str]) -> Response:
    """``DELETE .../deploy_tokens/:token_id``: 204; the token is revoked (kept, listed with ``revoked``)."""
    user, project, group = _scope_of(ctx, m)
    needed = MAINTAINER if project is not None else OWNER
    dt = _find(ctx, m, project, group) if _level(ctx.state, user, project, group) >= MAINTAINER else None
    if _level(ctx.state, user, project, group) < needed or dt is None:
        raise api.forbidden()
    dt.revoked = True
    return api.Response(204)


# ----------------------------------------------------------------------------- registry
def registry_auth(ctx: Ctx, m: re.Match[str]) -> Response:
    """``GET /jwt/auth?service=container_registry&scope=repository:<path>:pull`` with basic auth."""
    state = ctx.state
    denied = api.ApiError(401, {"errors": [{"code": "UNAUTHORIZED", "message": "HTTP Basic: Access denied"}]})
    auth = ctx.req.headers.get("authorization", "")
    if not auth.lower().startswith("basic "):
        raise denied
    try:
        login, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
    except ValueError:
        raise denied from None
    now = state.clock.now()
    dt = next((t for t in state.deploy_tokens.values() if t.token == password), None)
    if dt is None or dt.username != login or not dt.active(now):
        raise denied
    ctx.info.user = dt.username
    access = []
    scope = ctx.req.query.get("scope")
    if isinstance(scope, str) and scope.startswith("repository:"):
        _, repo, actions = scope.split(":", 2) if scope.count(":") >= 2 else (scope, "", "")
        granted = []
        if _covers(state, dt, repo):
            if "pull" in actions.split(",") and {"read_registry", "write_registry"} & set(dt.scopes):
                granted.append("pull")
            if "push" in actions.split(",") and "write_registry" in dt.scopes:
                granted.append("push")
        access.append({"type": "repository", "name": repo, "actions": granted})
    claims = {"sub": dt.username, "iat": int(now.timestamp()), "access": access}
    token = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return api.Response(200, {"token": token, "access_token": token, "issued_at": iso(now)})


def _covers(state: State, dt: DeployToken, repo: str) -> bool:
    """A project token covers its project's images; a group token those of every project below the group."""
    path = unquote(repo).split("/")
    for project in state.projects.values():
        full = state.project_full_path(project).split("/")
        if path[: len(full)] != full:
            continue
        if dt.project_id == project.id:
            return True
        return dt.group_id is not None and dt.group_id in {g.id for g in state.project_groups(project)}
    return False


def granted_actions(jwt_body: dict[str, object]) -> list[str]:
    """The actions inside a ``/jwt/auth`` reply's token (a test helper)."""
    raw = str(jwt_body["token"])
    claims = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    return [a for entry in claims["access"] for a in entry["actions"]]


ROUTES: list[tuple[str, str, api.Handler]] = [
    ("GET", r"/(?P<kind>projects|groups)/(?P<id>[^/]+)/deploy_tokens", list_tokens),
    ("POST", r"/(?P<kind>projects|groups)/(?P<id>[^/]+)/deploy_tokens", create_token),
    ("GET", r"/(?P<kind>projects|groups)/(?P<id>[^/]+)/deploy_tokens/(?P<token_id>[^/]+)", get_token),
    ("DELETE", r"/(?P<kind>projects|groups)/(?P<id>[^/]+)/deploy_tokens/(?P<token_id>[^/]+)", revoke_token),
    ("GET", r"/jwt/auth", registry_auth),
]

for _method, _pattern, _handler in ROUTES:
    api.register(_method, _pattern, _handler)
