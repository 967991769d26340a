"""The GitLab REST endpoints of the fake, paths relative to ``/api/v4``.

Each handler reproduces the status codes, bodies and checks GitLab documents (short names as in the package
docstring). The order of checks follows Grape's: authentication and scopes (``before`` blocks), then parameter
validation (400 ``{"error": ...}``), then lookups (404), permissions (403) and model validation.
Handlers run with the owner's state lock held.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, urlencode

from .state import (
    ACCESS_LEVELS,
    MAINTAINER,
    MAX_TAGS,
    MAX_TEXT_LENGTH,
    MIN_MAXIMUM_TIMEOUT,
    RUNNER_TYPES,
    AccessToken,
    Group,
    Job,
    Manager,
    Project,
    ReuseDetection,
    Runner,
    State,
    User,
    iso,
    to_sentence,
)
from .versions import DELETE_MANAGERS, RUNNER_MAINTENANCE_NOTE, RUNNER_MANAGERS, USER_RUNNERS, Version

USER_SCOPES = ("active", "paused", "online", "offline", "never_contacted", "stale")
ALL_SCOPES = (*USER_SCOPES, "specific", "shared", *RUNNER_TYPES)
DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
MAX_COUNTED = 10_000  # REST pagination
# PUT /runners/:id editable fields, in Grape's declaration order (runners API)
EDITABLE_FIELDS = (
    "description",
    "active",
    "paused",
    "tag_list",
    "run_untagged",
    "locked",
    "access_level",
    "maximum_timeout",
    "maintenance_note",
)
# GitLab's reuse detection: a revoked token presented on a path like this revokes its token family
# (https://docs.gitlab.com/api/personal_access_tokens/#automatic-reuse-detection)
ROTATE_PATH = re.compile(r"access_tokens/(\d+|self)/rotate$")
EXPIRED_BODY = {
    "error": "invalid_token",
    "error_description": "Token is expired. You can either do re-authorization or token refresh.",
}
REVOKED_BODY = {
    "error": "invalid_token",
    "error_description": "Token was revoked. You have to re-authorize from the user.",
}
_TRUE = frozenset({"true", "t", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "f", "0", "no", "n", "off"})


@dataclass
class Request:
    """A parsed API request. ``path`` is relative to ``/api/v4`` and still percent-encoded."""

    method: str
    path: str
    query: dict[str, Any]
    body: dict[str, Any]
    headers: Mapping[str, str]  # lower-case names
    client_ip: str
    base_url: str
    query_pairs: list[tuple[str, str]] = field(default_factory=list)
    raw: bytes = b""  # the body as sent (a job trace patch is text/plain, not params)

    @property
    def params(self) -> dict[str, Any]:
        """Query and body merged, the body winning (REST API)."""
        return {**self.query, **self.body}


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    text: str | None = None  # a non-JSON body, sent with ``content_type``
    content_type: str = "application/json"


class ApiError(Exception):
    """An error response raised from anywhere inside a handler."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.response = Response(status, body, dict(headers or {}))


@dataclass
class CallInfo:
    """What the handler learnt that belongs in the call log (no secrets)."""

    user: str | None = None
    runner_id: int | None = None


# ------------------------------------------------------------------ error shapes (REST status codes)
def grape_error(*messages: str) -> ApiError:
    return ApiError(400, {"error": ", ".join(messages)})


def bad_request(reason: str) -> ApiError:
    return ApiError(400, {"message": f"400 Bad request - {reason}"})


def unauthorized() -> ApiError:
    return ApiError(401, {"message": "401 Unauthorized"})


def forbidden(reason: str | None = None) -> ApiError:
    return ApiError(403, {"message": "403 Forbidden" + (f" - {reason}" if reason else "")})


def not_found(resource: str | None = None) -> ApiError:
    return ApiError(404, {"message": f"404 {resource} Not Found" if resource else "404 Not Found"})


# --------------------------------------------------------------------- parameters (REST API)
class Params:
    """Grape-style coercion; errors collect in declaration order and are raised together."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.errors: list[str] = []

    def present(self, name: str) -> bool:
        return name in self.data

    def _missing(self, name: str, required: bool, values: tuple[str, ...] | None) -> None:
        if required:
            self.errors.append(f"{name} is missing")
            if values is not None:
                self.errors.append(f"{name} does not have a valid value")

    def string(self, name: str, *, required: bool = False, values: tuple[str, ...] | None = None) -> str | None:
        value = self.data.get(name)
        if value is None:
            self._missing(name, required, values)
            return None
        if isinstance(value, dict | list):
            self.errors.append(f"{name} is invalid")
            return None
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if values is not None and text not in values:
            self.errors.append(f"{name} does not have a valid value")
            return None
        return text

    def integer(self, name: str, *, required: bool = False) -> int | None:
        value = self.data.get(name)
        if value is None:
            self._missing(name, required, None)
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        self.errors.append(f"{name} is invalid")
        return None

    def boolean(self, name: str) -> bool | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        self.errors.append(f"{name} is invalid")
        return None

    def str_list(self, name: str) -> list[str] | None:
        """An array or a comma-separated string (``CommaSeparatedToArray``), stripped, empties and dups dropped."""
        value = self.data.get(name)
        if value is None:
            return None
        items = value if isinstance(value, list) else [value]
        out: list[str] = []
        for item in items:
            if isinstance(item, dict | list):
                self.errors.append(f"{name} is invalid")
                return None
            for part in str(item).split(","):
                tag = part.strip()
                if tag and tag not in out:
                    out.append(tag)
        return out

    def mapping(self, name: str) -> dict[str, Any] | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.errors.append(f"{name} is invalid")
            return None
        return value

    def check(self) -> None:
        if self.errors:
            raise grape_error(*self.errors)


# ----------------------------------------------------------------------------- context
def allowed_scopes(method: str, path: str) -> list[str]:
    """Token scopes that grant this request (REST authentication)."""
    scopes = ["api"]
    if method in ("GET", "HEAD"):
        scopes.append("read_api")
        if path == "/user":
            scopes.append("read_user")
    if method == "POST" and path == "/user/runners":
        scopes.append("create_runner")
    if re.match(r"^/runners/\d+(/|$)", path):
        scopes.append("manage_runner")
    return scopes


class Ctx:
    """One request being handled: the state, the request, and authentication helpers."""

    def __init__(self, state: State, req: Request, info: CallInfo) -> None:
        self.state = state
        self.req = req
        self.info = info
        self.params = Params(req.params)
        self.user: User | None = None
        self.access_token: AccessToken | None = None  # the token the request authenticated with

    def authenticate(self, scopes: Collection[str] | None = None, *, any_scope: bool = False) -> User:
        """User-token authentication and scope check (REST authentication); the result is kept per request.

        ``scopes``: the scopes that grant this endpoint (default: :func:`allowed_scopes`); ``any_scope``: every scope
        this version knows does. Expired is checked before revoked, as GitLab's ``AccessTokenValidationService``
        does; a revoked token on a rotate path triggers reuse detection (``State.revoke_token_family``).
        """
        if self.user is not None:
            return self.user
        headers = self.req.headers
        token = headers.get("private-token")
        auth = headers.get("authorization", "")
        bearer = False
        if not token and auth.lower().startswith("bearer "):
            token, bearer = auth[7:].strip(), True
        if not token:
            value = self.req.query.get("private_token")
            token = value if isinstance(value, str) else None
        if not token:
            raise unauthorized()
        state = self.state
        access = state.access_tokens.get(token)
        # an OAuth token is looked up only from the Authorization header
        if access is None or access.user_id not in state.users or (access.kind == "oauth" and not bearer):
            raise unauthorized()
        endpoint = f"{self.req.method} {self.req.path}"
        now = state.clock.now()
        if access.expired(now):
            state.token_counters.expired_calls[endpoint] += 1
            raise ApiError(401, dict(EXPIRED_BODY))
        if access.revoked:
            state.token_counters.revoked_calls[endpoint] += 1
            if access.kind == "personal" and ROTATE_PATH.search(self.req.path):
                revoked = state.revoke_token_family(access)
                state.token_counters.reuse_detections.append(
                    ReuseDetection(access.id, revoked, self.req.method, self.req.path, now)
                )
            raise ApiError(401, dict(REVOKED_BODY))
        user = state.users[access.user_id]
        self.info.user = user.username
        allowed = list(scopes) if scopes is not None else allowed_scopes(self.req.method, self.req.path)
        held = {s for s in access.scopes if state.instance.knows_scope(s)}
        if not (held if any_scope else held & set(allowed)):
            raise ApiError(
                403,
                {
                    "error": "insufficient_scope",
                    "error_description": "The request requires higher privileges than provided by the access token.",
                    "scope": " ".join(allowed),
                },
            )
        state.note_token_use(access, self.req.client_ip)
        self.user, self.access_token = user, access
        return user

    def runner_from_token(self, token: str) -> Runner:
        """Runner-token authentication (REST API): unknown, expired or deleted → 403."""
        runner = self.state.runner_for_token(token)
        if runner is None or self.state.token_expired(runner):
            raise forbidden()
        self.info.runner_id = runner.id
        return runner

    def find_runner(self, raw_id: str) -> Runner:
        runner = self.state.runners.get(int(raw_id))
        if runner is None:
            raise not_found("Runner")
        self.info.runner_id = runner.id
        return runner


def path_id(ctx: Ctx, raw: str, name: str = "id") -> str:
    """A numeric ``:id`` (Grape ``type: Integer``): anything else is 400 "<name> is invalid"."""
    if not raw.isdigit():
        raise grape_error(f"{name} is invalid")
    return raw


# ----------------------------------------------------------------------------- entities
def user_basic(ctx: Ctx, user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "name": user.name,
        "state": "active",
        "locked": False,
        "avatar_url": None,
        "web_url": f"{ctx.req.base_url}/{user.username}",
    }


def runner_entity(ctx: Ctx, runner: Runner) -> dict[str, Any]:
    """The list fields (runners API item shape)."""
    state = ctx.state
    body: dict[str, Any] = {
        "id": runner.id,
        "description": runner.description,
        "ip_address": None,
        "active": runner.active,
        "paused": runner.paused,
        "is_shared": runner.runner_type == "instance_type",
        "runner_type": runner.runner_type,
        "name": runner.name,
        "online": state.is_online(runner.contacted_at),
        "created_at": iso(runner.created_at),
        "status": state.runner_status(runner),
        "job_execution_status": "idle",
    }
    creator = state.users.get(runner.creator_id) if runner.creator_id is not None else None
    if creator is not None:
        body["created_by"] = user_basic(ctx, creator)
    return body


def project_entity(ctx: Ctx, project: Project) -> dict[str, Any]:
    state = ctx.state
    return {
        "id": project.id,
        "description": None,
        "name": project.name,
        "name_with_namespace": state.project_full_name(project),
        "path": project.path,
        "path_with_namespace": state.project_full_path(project),
        "created_at": iso(project.created_at),
    }


def group_entity(ctx: Ctx, group: Group) -> dict[str, Any]:
    return {
        "id": group.id,
        "web_url": f"{ctx.req.base_url}/groups/{ctx.state.group_full_path(group)}",
        "name": group.name,
    }


def runner_details(ctx: Ctx, runner: Runner, user: User, *, include_projects: bool = True) -> dict[str, Any]:
    """RunnerDetails (runners API); ``maintenance_note`` only for callers who may update the runner."""
    state = ctx.state
    latest = state.latest_manager(runner)
    body = runner_entity(ctx, runner)
    body.update(
        {
            "tag_list": list(runner.tag_list),
            "run_untagged": runner.run_untagged,
            "locked": runner.locked,
            "maximum_timeout": runner.maximum_timeout,
            "access_level": runner.access_level,
            "version": latest.version if latest else None,
            "revision": latest.revision if latest else None,
            "platform": latest.platform if latest else None,
            "architecture": latest.architecture if latest else None,
            "contacted_at": iso(runner.contacted_at),
            "maintenance_note": runner.maintenance_note if state.can_update_runner(user, runner) else None,
        }
    )
    if not state.instance.at_least(RUNNER_MAINTENANCE_NOTE):
        del body["maintenance_note"]
    if include_projects:
        body["projects"] = [project_entity(ctx, state.projects[p]) for p in runner.project_ids if p in state.projects]
    groups = [state.groups[runner.group_id]] if runner.group_id in state.groups else []
    body["groups"] = [group_entity(ctx, g) for g in groups]
    return body


def manager_entity(ctx: Ctx, manager: Manager) -> dict[str, Any]:
    """runners API element shape."""
    return {
        "id": manager.id,
        "system_id": manager.system_id,
        "version": manager.version,
        "revision": manager.revision,
        "platform": manager.platform,
        "architecture": manager.architecture,
        "created_at": iso(manager.created_at),
        "contacted_at": iso(manager.contacted_at),
        "ip_address": manager.ip_address,
        "status": ctx.state.manager_status(manager),
        "job_execution_status": "idle",
    }


def model_errors(
    *,
    description: str | None,
    maintenance_note: str | None,
    tag_list: list[str],
    run_untagged: bool,
    maximum_timeout: int | None,
    tags_changed: bool,
) -> dict[str, list[str]]:
    """``Ci::Runner`` validations (runners API), as ``{attribute: [message, ...]}``."""
    errors: dict[str, list[str]] = {}
    too_long = f"is too long (maximum is {MAX_TEXT_LENGTH} characters)"
    if description is not None and len(description) > MAX_TEXT_LENGTH:
        errors.setdefault("description", []).append(too_long)
    if maintenance_note is not None and len(maintenance_note) > MAX_TEXT_LENGTH:
        errors.setdefault("maintenance_note", []).append(too_long)
    if not tag_list and not run_untagged:
        errors.setdefault("tags_list", []).append("can not be empty when runner is not allowed to pick untagged jobs")
    if tags_changed and len(tag_list) > MAX_TAGS:
        errors.setdefault("tags_list", []).append(
            f"Too many tags specified. Please limit the number of tags to {MAX_TAGS}"
        )
    if maximum_timeout is not None and maximum_timeout < MIN_MAXIMUM_TIMEOUT:
        errors.setdefault("maximum_timeout", []).append("needs to be at least 10 minutes")
    return errors


def full_messages(errors: dict[str, list[str]]) -> list[str]:
    """Rails ``full_messages``: the humanized attribute name, then the message."""
    return [f"{attr.replace('_', ' ').capitalize()} {msg}" for attr, msgs in errors.items() for msg in msgs]


# ----------------------------------------------------------------------------- lists
def _page_params(ctx: Ctx) -> tuple[int, int]:
    page = ctx.params.integer("page")
    per_page = ctx.params.integer("per_page")
    page = page if page is not None and page >= 1 else 1
    if per_page is None or per_page < 1:
        per_page = DEFAULT_PER_PAGE
    return page, min(per_page, MAX_PER_PAGE)


def paginate(
    ctx: Ctx, items: list[Any], page: int, per_page: int, render: Callable[[Any], Any] = lambda item: item
) -> Response:
    """Offset pagination with GitLab's headers (REST pagination); ``render`` turns the page's items into JSON."""
    total = len(items)
    total_pages = max(1, -(-total // per_page))
    chunk = [render(item) for item in items[(page - 1) * per_page : page * per_page]]
    next_page = page + 1 if page < total_pages else None
    prev_page = page - 1 if page > 1 else None
    base_pairs = [(k, v) for k, v in ctx.req.query_pairs if k not in ("page", "per_page")]

    def link(target: int) -> str:
        query = urlencode([*base_pairs, ("page", str(target)), ("per_page", str(per_page))])
        return f"{ctx.req.base_url}/api/v4{ctx.req.path}?{query}"

    counted = total <= MAX_COUNTED  # above it GitLab leaves out the totals and the "last" link
    links = []
    if prev_page is not None:
        links.append(f'<{link(prev_page)}>; rel="prev"')
    if next_page is not None:
        links.append(f'<{link(next_page)}>; rel="next"')
    links.append(f'<{link(1)}>; rel="first"')
    if counted:
        links.append(f'<{link(total_pages)}>; rel="last"')
    headers = {
        "x-page": str(page),
        "x-per-page": str(per_page),
        "x-next-page": str(next_page) if next_page is not None else "",
        "x-prev-page": str(prev_page) if prev_page is not None else "",
    }
    if counted:
        headers.update({"x-total": str(total), "x-total-pages": str(total_pages)})
    headers["Link"] = ", ".join(links)
    return Response(200, chunk, headers)


@dataclass
class ListFilters:
    type: str | None
    scope: str | None
    page: int
    per_page: int


def list_filters(ctx: Ctx, *, scopes: tuple[str, ...] | None) -> ListFilters:
    """Parse the list filters the operator and python-gitlab send: type and scope (400 on bad values). GitLab's
    other filters (status, paused, tag_list, version_prefix) are not implemented."""
    p = ctx.params
    filters = ListFilters(
        type=p.string("type", values=RUNNER_TYPES),
        scope=p.string("scope") if scopes is not None else None,
        page=1,
        per_page=DEFAULT_PER_PAGE,
    )
    filters.page, filters.per_page = _page_params(ctx)
    p.check()
    if scopes is not None and filters.scope is not None and filters.scope not in scopes:
        raise ApiError(400, {"message": "Scope contains invalid value"})
    return filters


def apply_filters(ctx: Ctx, runners: list[Runner], f: ListFilters) -> Response:
    state = ctx.state
    out = sorted(runners, key=lambda r: r.id)
    if f.scope is not None:
        if f.scope == "specific":
            out = [r for r in out if r.runner_type != "instance_type"]
        elif f.scope == "shared":
            out = [r for r in out if r.runner_type == "instance_type"]
        elif f.scope in RUNNER_TYPES:
            out = [r for r in out if r.runner_type == f.scope]
        else:
            out = [r for r in out if state.runner_matches_status(r, f.scope)]
    if f.type is not None:
        out = [r for r in out if r.runner_type == f.type]
    return paginate(ctx, out, f.page, f.per_page, lambda runner: runner_entity(ctx, runner))


# ----------------------------------------------------------------------------- endpoints
Handler = Callable[[Ctx, re.Match[str]], Response]


def get_user(ctx: Ctx, m: re.Match[str]) -> Response:
    user = ctx.authenticate()
    return Response(200, {**user_basic(ctx, user), "is_admin": user.admin})


def create_user_runner(ctx: Ctx, m: re.Match[str]) -> Response:
    """``POST /user/runners`` (create a runner)."""
    user = ctx.authenticate()
    p = ctx.params
    runner_type = p.string("runner_type", required=True, values=RUNNER_TYPES)
    group_id = p.integer("group_id", required=runner_type == "group_type")
    project_id = p.integer("project_id", required=runner_type == "project_type")
    description = p.string("description")
    maintenance_note = p.string("maintenance_note")
    paused = p.boolean("paused")
    locked = p.boolean("locked")
    run_untagged = p.boolean("run_untagged")
    tag_list = p.str_list("tag_list")
    access_level = p.string("access_level", values=ACCESS_LEVELS)
    maximum_timeout = p.integer("maximum_timeout")
    p.check()
    assert runner_type is not None
    state = ctx.state
    group: Group | None = None
    project: Project | None = None
    if runner_type == "group_type":
        group = state.groups.get(group_id) if group_id is not None else None
        if group is None:
            raise bad_request("Missing/invalid group")
    elif runner_type == "project_type":
        project = state.projects.get(project_id) if project_id is not None else None
        if project is None:
            raise bad_request("Missing/invalid project")
    if not state.can_create_runner(user, runner_type, group, project):
        raise forbidden("Insufficient permissions")
    tags = tag_list or []
    untagged = True if run_untagged is None else run_untagged
    errors = model_errors(
        description=description,
        maintenance_note=maintenance_note,
        tag_list=tags,
        run_untagged=untagged,
        maximum_timeout=maximum_timeout,
        tags_changed=True,
    )
    if errors:
        raise bad_request(to_sentence(full_messages(errors)))
    runner = state.create_runner(
        runner_type=runner_type,
        creator=user,
        group_id=group.id if group else None,
        project_ids=[project.id] if project else [],
        description=description or "",
        maintenance_note=maintenance_note,
        paused=bool(paused),
        locked=bool(locked),
        run_untagged=untagged,
        tag_list=tags,
        access_level=access_level or "not_protected",
        maximum_timeout=maximum_timeout,
    )
    ctx.info.runner_id = runner.id
    return Response(201, {"id": runner.id, "token": runner.token, "token_expires_at": iso(runner.token_expires_at)})


def _runner_token(ctx: Ctx, *extra_required: str) -> tuple[str, dict[str, str | None]]:
    p = ctx.params
    token = p.string("token", required=True)
    extra = {name: p.string(name, required=True) for name in extra_required}
    p.check()
    assert token is not None
    return token, extra


def verify_runner(ctx: Ctx, m: re.Match[str]) -> Response:
    """``POST /runners/verify`` (runners API): 200, heartbeat, manager upsert, ``creation_state`` unchanged."""
    p = ctx.params
    token = p.string("token", required=True)
    system_id = p.string("system_id")
    info = p.mapping("info")
    p.check()
    assert token is not None
    runner = ctx.runner_from_token(token)
    ctx.state.heartbeat(runner, system_id=system_id, info=info, ip_address=ctx.req.client_ip, finish=False)
    return Response(200, {"id": runner.id, "token": runner.token, "token_expires_at": iso(runner.token_expires_at)})


def reset_token_by_token(ctx: Ctx, m: re.Match[str]) -> Response:
    """``POST /runners/reset_authentication_token`` (runners API): 201, old token dead at once."""
    token, _ = _runner_token(ctx)
    runner = ctx.runner_from_token(token)
    new_token = ctx.state.rotate_token(runner)
    return Response(201, {"token": new_token, "token_expires_at": iso(runner.token_expires_at)})


def delete_runner_by_token(ctx: Ctx, m: re.Match[str]) -> Response:
    """``DELETE /runners`` (runners API): deletes the runner itself."""
    token, _ = _runner_token(ctx)
    runner = ctx.runner_from_token(token)
    ctx.state.delete_runner(runner)
    return Response(204)


def delete_manager(ctx: Ctx, m: re.Match[str]) -> Response:
    """``DELETE /runners/managers`` (runners API): removes one manager; runner and token live on."""
    token, extra = _runner_token(ctx, "system_id")
    runner = ctx.runner_from_token(token)
    system_id = extra["system_id"]
    if system_id not in runner.managers:
        raise not_found("Runner manager not found")
    del runner.managers[system_id]
    return Response(204)


def jobs_request(ctx: Ctx, m: re.Match[str]) -> Response:
    """``POST /jobs/request`` (job requests)."""
    p = ctx.params
    token = p.string("token", required=True)
    system_id = p.string("system_id")
    last_update = p.string("last_update")
    info = p.mapping("info")
    p.check()
    assert token is not None
    state = ctx.state
    runner = ctx.runner_from_token(token)
    state.heartbeat(runner, system_id=system_id, info=info, ip_address=ctx.req.client_ip, finish=True)
    no_job = Response(204, headers={"X-GitLab-Last-Update": runner.queue_value})
    if runner.paused or last_update == runner.queue_value:
        return no_job
    job = state.take_job(runner, system_id)
    if job is None:
        return no_job
    return Response(201, job_payload(ctx, job, runner))


def job_payload(ctx: Ctx, job: Job, runner: Runner) -> dict[str, Any]:
    """A minimal job with the fields job requests names; the test's payload overrides them."""
    timeout = runner.maximum_timeout or 3600
    sha = "0" * 40
    payload: dict[str, Any] = {
        "id": job.id,
        "token": "glcbt-" + secrets.token_urlsafe(15),
        "allow_git_fetch": True,
        "job_info": {"id": job.id, "name": "fake-job", "stage": "test", "project_id": 1, "project_name": "fake"},
        "git_info": {
            "repo_url": f"{ctx.req.base_url}/fake/project.git",
            "ref": "main",
            "sha": sha,
            "before_sha": sha,
            "ref_type": "branch",
            "refspecs": ["+refs/heads/main:refs/remotes/origin/main"],
            "depth": 20,
            "repo_object_format": "sha1",
        },
        "runner_info": {"timeout": timeout, "runner_session_url": None},
        "variables": [{"key": "CI_JOB_ID", "value": str(job.id), "public": True, "masked": False}],
        "steps": [
            {
                "name": "script",
                "script": ["echo fake job"],
                "timeout": timeout,
                "when": "on_success",
                "allow_failure": False,
            }
        ],
        "hooks": [],
        "image": None,
        "services": [],
        "artifacts": [],
        "cache": [],
        "credentials": [],
        "dependencies": [],
        "features": {},
    }
    payload.update(job.payload)
    return payload


def get_runner(ctx: Ctx, m: re.Match[str]) -> Response:
    """``GET /runners/:id`` (runners API)."""
    user = ctx.authenticate()
    raw = path_id(ctx, m["id"])
    include_projects = ctx.params.boolean("include_projects")
    ctx.params.check()
    runner = ctx.find_runner(raw)
    if not (user.admin or ctx.state.can_read_runner(user, runner)):
        raise forbidden("No access granted")
    return Response(200, runner_details(ctx, runner, user, include_projects=include_projects is not False))


def update_runner(ctx: Ctx, m: re.Match[str]) -> Response:
    """``PUT /runners/:id`` (runners API)."""
    user = ctx.authenticate()
    raw = path_id(ctx, m["id"])
    p = ctx.params
    if not ctx.state.instance.at_least(RUNNER_MAINTENANCE_NOTE):
        # an undeclared parameter: Grape ignores it
        p = ctx.params = Params({k: v for k, v in ctx.req.params.items() if k != "maintenance_note"})
    description = p.string("description")
    active = p.boolean("active")
    paused = p.boolean("paused")
    tag_list = p.str_list("tag_list")
    run_untagged = p.boolean("run_untagged")
    locked = p.boolean("locked")
    access_level = p.string("access_level", values=ACCESS_LEVELS)
    maximum_timeout = p.integer("maximum_timeout")
    maintenance_note = p.string("maintenance_note")
    if p.present("active") and p.present("paused"):
        p.errors.append("active, paused are mutually exclusive")
    if not any(p.present(name) for name in EDITABLE_FIELDS):
        p.errors.append(", ".join(EDITABLE_FIELDS) + " are missing, at least one parameter must be provided")
    p.check()
    state = ctx.state
    runner = ctx.find_runner(raw)
    if not state.can_update_runner(user, runner):
        raise forbidden("No access granted")
    new: dict[str, Any] = {}
    if p.present("description"):
        new["description"] = description or ""
    if active is not None:
        new["paused"] = not active
    if paused is not None:
        new["paused"] = paused
    if p.present("tag_list"):
        new["tag_list"] = tag_list or []
    if run_untagged is not None:
        new["run_untagged"] = run_untagged
    if locked is not None:
        new["locked"] = locked
    if access_level is not None:
        new["access_level"] = access_level
    if p.present("maximum_timeout"):
        new["maximum_timeout"] = maximum_timeout
    if p.present("maintenance_note"):
        new["maintenance_note"] = maintenance_note
    merged = {name: new.get(name, getattr(runner, name)) for name in ("description", "maintenance_note")}
    errors = model_errors(
        description=merged["description"],
        maintenance_note=merged["maintenance_note"],
        tag_list=new.get("tag_list", runner.tag_list),
        run_untagged=new.get("run_untagged", runner.run_untagged),
        maximum_timeout=new.get("maximum_timeout", runner.maximum_timeout),
        tags_changed="tag_list" in new and new["tag_list"] != runner.tag_list,
    )
    if errors:
        raise ApiError(400, {"message": errors})
    for name, value in new.items():
        setattr(runner, name, value)
    runner.updated_at = state.clock.now()
    return Response(200, runner_details(ctx, runner, user))


def delete_runner(ctx: Ctx, m: re.Match[str]) -> Response:
    """``DELETE /runners/:id`` (runners API)."""
    user = ctx.authenticate()
    raw = path_id(ctx, m["id"])
    runner = ctx.find_runner(raw)
    if not user.admin:
        if len(runner.project_ids) > 1:
            raise forbidden("Runner associated with more than one project")
        if not ctx.state.can_update_runner(user, runner):
            raise forbidden("No access granted")
    since = ctx.req.headers.get("if-unmodified-since")
    if since and runner.updated_at is not None:
        try:
            limit: datetime | None = parsedate_to_datetime(since)
        except (TypeError, ValueError):
            limit = None
        if limit is not None and runner.updated_at.replace(microsecond=0) > limit:
            raise ApiError(412, {"message": "412 Precondition Failed"})
    ctx.state.delete_runner(runner)
    return Response(204)


def list_managers(ctx: Ctx, m: re.Match[str]) -> Response:
    """``GET /runners/:id/managers`` (runners API): every manager, not paginated."""
    user = ctx.authenticate()
    raw = path_id(ctx, m["id"])
    runner = ctx.find_runner(raw)
    if not (user.admin or ctx.state.can_read_runner(user, runner)):
        raise forbidden("No access granted")
    managers = sorted(runner.managers.values(), key=lambda mg: mg.id)
    return Response(200, [manager_entity(ctx, mg) for mg in managers])


def reset_token_by_id(ctx: Ctx, m: re.Match[str]) -> Response:
    """``POST /runners/:id/reset_authentication_token`` (runners API): works on an expired token too."""
    user = ctx.authenticate()
    raw = path_id(ctx, m["id"])
    runner = ctx.find_runner(raw)
    if not ctx.state.can_update_runner(user, runner):
        raise forbidden("No access granted")
    new_token = ctx.state.rotate_token(runner)
    return Response(201, {"token": new_token, "token_expires_at": iso(runner.token_expires_at)})


def list_runners(ctx: Ctx, m: re.Match[str]) -> Response:
    """``GET /runners`` (runners API): runners the user administers through membership."""
    user = ctx.authenticate()
    filters = list_filters(ctx, scopes=USER_SCOPES)
    owned = [r for r in ctx.state.runners.values() if ctx.state.owns_runner(user, r)]
    return apply_filters(ctx, owned, filters)


def list_all_runners(ctx: Ctx, m: re.Match[str]) -> Response:
    """``GET /runners/all`` (runners API): administrators only."""
    user = ctx.authenticate()
    filters = list_filters(ctx, scopes=ALL_SCOPES)
    if not user.admin:
        raise forbidden()
    return apply_filters(ctx, list(ctx.state.runners.values()), filters)


def _group_or_404(ctx: Ctx, user: User, raw: str) -> Group:
    group = ctx.state.find_group(unquote(raw))
    if group is None or not (user.admin or ctx.state.group_access(user, group) > 0):
        raise not_found("Group")
    return group


def _project_or_404(ctx: Ctx, user: User, raw: str) -> Project:
    project = ctx.state.find_project(unquote(raw))
    if project is None or not (user.admin or ctx.state.project_access(user, project) > 0):
        raise not_found("Project")
    return project


def get_project(ctx: Ctx, m: re.Match[str]) -> Response:
    """``GET /projects/:id`` (projects API): the operator reads ``path_with_namespace`` for GraphQL's ``fullPath``."""
    user = ctx.authenticate()
    return Response(200, project_entity(ctx, _project_or_404(ctx, user, m["id"])))


def get_group(ctx: Ctx, m: re.Match[str]) -> Response:
    """``GET /groups/:id`` (groups API): ``full_path``, GraphQL's ``fullPath`` of the group."""
    user = ctx.authenticate()
    group = _group_or_404(ctx, user, m["id"])
    return Response(
        200, {**group_entity(ctx, group), "path": group.path, "full_path": ctx.state.group_full_path(group)}
    )


def list_group_runners(ctx: Ctx, m: re.Match[str]) -> Response:
    """``GET /groups/:id/runners`` (runners API): the group's and its ancestors' runners plus instance runners."""
    user = ctx.authenticate()
    filters = list_filters(ctx, scopes=None)
    state = ctx.state
    group = _group_or_404(ctx, user, m["id"])
    if not user.admin and state.group_access(user, group) < MAINTAINER:
        raise forbidden()
    group_ids = {g.id for g in [group, *state.group_ancestors(group)]}
    runners = [
        r
        for r in state.runners.values()
        if r.runner_type == "instance_type" or (r.runner_type == "group_type" and r.group_id in group_ids)
    ]
    return apply_filters(ctx, runners, filters)


def list_project_runners(ctx: Ctx, m: re.Match[str]) -> Response:
    """``GET /projects/:id/runners`` (runners API): own, ancestor groups' and instance runners."""
    user = ctx.authenticate()
    filters = list_filters(ctx, scopes=ALL_SCOPES)
    state = ctx.state
    project = _project_or_404(ctx, user, m["id"])
    if not user.admin and state.project_access(user, project) < MAINTAINER:
        raise forbidden()
    group_ids = {g.id for g in state.project_groups(project)}
    runners = [
        r
        for r in state.runners.values()
        if r.runner_type == "instance_type"
        or (r.runner_type == "group_type" and r.group_id in group_ids)
        or (r.runner_type == "project_type" and project.id in r.project_ids)
    ]
    return apply_filters(ctx, runners, filters)


# (method, path regex, handler); first match wins. Routes that exist with another method give 405.
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    (method, re.compile(f"^{pattern}$"), handler)
    for method, pattern, handler in [
        ("GET", r"/user", get_user),
        ("POST", r"/user/runners", create_user_runner),
        ("POST", r"/runners/verify", verify_runner),
        ("POST", r"/runners/reset_authentication_token", reset_token_by_token),
        ("DELETE", r"/runners/managers", delete_manager),
        ("DELETE", r"/runners", delete_runner_by_token),
        ("GET", r"/runners", list_runners),
        ("GET", r"/runners/all", list_all_runners),
        ("GET", r"/runners/(?P<id>[^/]+)", get_runner),
        ("PUT", r"/runners/(?P<id>[^/]+)", update_runner),
        ("DELETE", r"/runners/(?P<id>[^/]+)", delete_runner),
        ("GET", r"/runners/(?P<id>[^/]+)/managers", list_managers),
        ("POST", r"/runners/(?P<id>[^/]+)/reset_authentication_token", reset_token_by_id),
        ("GET", r"/groups/(?P<id>[^/]+)", get_group),
        ("GET", r"/projects/(?P<id>[^/]+)", get_project),
        ("GET", r"/groups/(?P<id>[^/]+)/runners", list_group_runners),
        ("GET", r"/projects/(?P<id>[^/]+)/runners", list_project_runners),
        ("POST", r"/jobs/request", jobs_request),
    ]
]


# Handlers of routes that a GitLab version before this one does not have (see :mod:`.versions`).
ROUTE_SINCE: dict[Handler, Version] = {
    create_user_runner: USER_RUNNERS,
    delete_manager: DELETE_MANAGERS,
    list_managers: RUNNER_MANAGERS,
}


def register(method: str, pattern: str, handler: Handler, *, since: Version | None = None) -> None:
    """Add a route (used by feature modules such as :mod:`.deploy_tokens`); the path is relative to ``/api/v4``.

    ``since``: the release that added it; an older instance version routes as if it were absent."""
    ROUTES.append((method, re.compile(f"^{pattern}$"), handler))
    if since is not None:
        ROUTE_SINCE[handler] = since


def dispatch(state: State, req: Request, info: CallInfo) -> Response:
    """Route and run one API request; errors become their GitLab-shaped responses."""
    method = "GET" if req.method == "HEAD" else req.method
    path_known = False
    for route_method, pattern, handler in ROUTES:
        match = pattern.match(req.path)
        if match is None or not state.instance.at_least(ROUTE_SINCE.get(handler)):
            continue
        path_known = True
        if route_method != method:
            continue
        try:
            return handler(Ctx(state, req, info), match)
        except ApiError as exc:
            return exc.response
    if path_known:
        return Response(405, {"error": "405 Not Allowed"})
    return Response(404, {"error": "404 Not Found"})


# Job updates for runner stand-ins live in their own module.
from . import jobs as _jobs  # noqa: E402 -- imports this module's names

ROUTES.extend((method, re.compile(f"^{pattern}$"), handler) for method, pattern, handler in _jobs.ROUTES)
