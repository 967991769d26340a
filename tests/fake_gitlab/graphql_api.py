"""GitLab's GraphQL API (``/api/graphql``) for runners, executed by graphql-core against the project's schema.

The schema is the SDL the operator keeps (``glrt_operator/adapters/gitlab/schema.graphql``); documents are parsed,
validated and executed by graphql-core with resolvers bound to the fake's :class:`~.state.State`, so a query the
fake answers is a query the schema accepts. GitLab's rules, as documented in "GraphQL API"
(https://docs.gitlab.com/api/graphql/, cited as *GraphQL docs*) and as GitLab's ``app/graphql`` code applies them:

- ``POST`` (JSON object, or an array: a multiplex) and ``GET`` (``query``, ``variables``, ``operationName``).
  A personal access token in ``Authorization: Bearer``, ``PRIVATE-TOKEN`` or ``?private_token=``; scopes ``api``
  or ``read_api``. A token that is unknown, expired, revoked or of another scope: 401
  ``{"errors":[{"message":"Invalid token"}]}``. No token: anonymous (runners are never public, groups and projects
  of the fake are private, so an anonymous caller reads nulls).
- More than 10,000 characters of query text (summed over a multiplex): 422 ``Query too large``. Everything else is
  HTTP 200 with ``errors``: at most 5 validation errors, then depth (15 anonymous, 20 authenticated) and complexity
  (200 anonymous, 250 authenticated, 300 administrators; a multiplex counts the sum) before anything executes.
- Complexity as GitLab's ``Types::BaseField`` and ``Resolvers::BaseResolver`` compute it (see :func:`complexity`).
- Entry points: ``Query.runners`` administrators only (others: ``runners: null`` and a "resource not available"
  error); ``Group.runners`` group Maintainer or Owner (the ``read_group_runners`` rule of GitLab's newer group
  policy; older releases asked for Owner); ``Project.runners`` project Maintainer (the project's own runners and
  the instance runners); ``Query.runner(id)`` null when unknown or not readable. Node fields follow the runner
  policy: ``maintenanceNote`` only for callers who may update the runner, ``tokenExpiresAt`` only for those who may
  read its sensitive data (not instance runners, except for administrators).

Test knobs, not GitLab behaviour: :func:`configure` turns the endpoint off (404, as on a GitLab without it) or
removes fields from the schema (``"CiRunner.managers"``, ``"Group.runners(membership)"``) so that documents fail
validation as on a GitLab release that predates them.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import weakref
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, NamedTuple

from graphql import (
    DefinitionNode,
    DocumentNode,
    FieldDefinitionNode,
    FieldNode,
    FieldsOnCorrectTypeRule,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    KnownArgumentNamesRule,
    OperationDefinitionNode,
    OperationType,
    ValidationRule,
    build_ast_schema,
    execute_sync,
    get_named_type,
    get_operation_ast,
    parse,
    specified_rules,
    validate,
)
from graphql.execution.collect_fields import collect_fields, collect_sub_fields
from graphql.execution.execute import get_field_def
from graphql.execution.values import get_argument_values, get_variable_values
from graphql.language import ArgumentNode, ObjectTypeDefinitionNode, StringValueNode, ValueNode

from . import api
from .state import MAINTAINER, Group, Manager, Project, Runner, State, User

if TYPE_CHECKING:
    from .server import FakeGitLab

GRAPHQL_PATH = "/api/graphql"
SCHEMA_RESOURCE = ("glrt_operator.adapters.gitlab", "schema.graphql")
MAX_QUERY_SIZE = 10_000  # characters, GitLab's GraphqlController
MAX_VALIDATION_ERRORS = 5
PAGE_SIZE = 100  # default_max_page_size: the default and the cap of first/last
COMPLEXITY_LIMITS = {"anonymous": 200, "authenticated": 250, "admin": 300}
DEPTH_LIMITS = {"anonymous": 15, "authenticated": 20}
ALLOWED_SCOPES = frozenset({"api", "read_api"})
NOT_AVAILABLE = (
    "The resource that you are attempting to access does not exist or you don't have permission to perform this action"
)
# Ci::RunnerManager::EXECUTOR_NAME_TO_TYPES: executor names GitLab stores; any other is kept as "unknown".
EXECUTOR_NAMES = frozenset(
    {
        "unknown",
        "custom",
        "shell",
        "docker",
        "docker-windows",
        "docker-ssh",
        "ssh",
        "parallels",
        "virtualbox",
        "docker+machine",
        "docker-ssh+machine",
        "kubernetes",
        "docker-autoscaler",
        "instance",
    }
)
# Fields whose resolver class adds GitLab's resolver complexity (1, +1 with sort, +5 with search) and, for
# connections, the page-size multiplier. Every other field costs 1 plus its selections.
RESOLVER_FIELDS = frozenset(
    {
        ("Query", "group"),
        ("Query", "project"),
        ("Query", "runner"),
        ("Query", "runners"),
        ("Group", "runners"),
        ("Project", "runners"),
        ("CiRunner", "managers"),
    }
)


# ------------------------------------------------------------------------------------------ test switch
@dataclass(frozen=True)
class Switch:
    """The endpoint's test knobs (not GitLab settings): off answers 404; ``removed_fields`` shrink the schema."""

    enabled: bool = True
    removed_fields: frozenset[str] = frozenset()


# Per fake GitLab, kept here so the shared State stays unchanged (as jobs.py does).
_SWITCHES: weakref.WeakKeyDictionary[State, Switch] = weakref.WeakKeyDictionary()


def configure(fake: FakeGitLab, *, enabled: bool | None = None, removed_fields: Iterable[str] | None = None) -> Switch:
    """Turn ``/api/graphql`` on or off, or remove fields (``"Type.field"`` or ``"Type.field(argument)"``)."""
    with fake._lock:
        current = _SWITCHES.get(fake._state, Switch())
        if enabled is not None:
            current = replace(current, enabled=enabled)
        if removed_fields is not None:
            names = frozenset(removed_fields)
            unknown = sorted(n for n in names if not _schema_has(n))
            if unknown:
                raise ValueError(f"not in the schema: {', '.join(unknown)}")
            current = replace(current, removed_fields=names)
        _SWITCHES[fake._state] = current
        return current


def reset(state: State) -> None:
    """Back to GraphQL on with the whole schema (``FakeGitLab.reset``)."""
    _SWITCHES.pop(state, None)


def switch(fake: FakeGitLab) -> Switch:
    with fake._lock:
        return _SWITCHES.get(fake._state, Switch())


def control(fake: FakeGitLab, method: str, body: dict[str, Any]) -> api.Response:
    """``GET/PUT /-/fake/graphql``: ``{"enabled": bool, "removed_fields": [...]}``."""
    if method == "PUT":
        unknown = sorted(set(body) - {"enabled", "removed_fields"})
        if unknown:
            return api.Response(400, {"message": f"unknown fields: {', '.join(unknown)}"})
        configure(fake, enabled=body.get("enabled"), removed_fields=body.get("removed_fields"))
    elif method != "GET":
        return api.Response(405, {"message": "GET or PUT"})
    current = switch(fake)
    return api.Response(200, {"enabled": current.enabled, "removed_fields": sorted(current.removed_fields)})


# ------------------------------------------------------------------------------------------------ schema
def schema_sdl() -> str:
    """The SDL the operator keeps (package data of glrt_operator)."""
    package, name = SCHEMA_RESOURCE
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")


@cache
def _base_document() -> DocumentNode:
    return parse(schema_sdl())


def _schema_has(name: str) -> bool:
    match = re.fullmatch(r"(\w+)\.(\w+)(?:\((\w+)\))?", name)
    if match is None:
        return False
    type_ = build_schema_for(frozenset()).get_type(match[1])
    if not isinstance(type_, GraphQLObjectType) or match[2] not in type_.fields:
        return False
    return match[3] is None or match[3] in type_.fields[match[2]].args


def _without(document: DocumentNode, removed: frozenset[str]) -> DocumentNode:
    """The SDL document minus the named fields and arguments."""
    definitions: list[DefinitionNode] = []
    for definition in document.definitions:
        if isinstance(definition, ObjectTypeDefinitionNode):
            type_name = definition.name.value
            fields: list[FieldDefinitionNode] = []
            for field_def in definition.fields or ():
                qualified = f"{type_name}.{field_def.name.value}"
                if qualified in removed:
                    continue
                arguments = [a for a in field_def.arguments or () if f"{qualified}({a.name.value})" not in removed]
                trimmed = copy.copy(field_def)
                trimmed.arguments = tuple(arguments)
                fields.append(trimmed)
            shrunk = copy.copy(definition)
            shrunk.fields = tuple(fields)
            definitions.append(shrunk)
        else:
            definitions.append(definition)
    return DocumentNode(definitions=tuple(definitions))


@cache
def build_schema_for(removed: frozenset[str]) -> GraphQLSchema:
    """The schema (minus ``removed``) with the fake's resolvers and GitLab's scalar rules bound to it."""
    document = _base_document() if not removed else _without(_base_document(), removed)
    schema = build_ast_schema(document)
    _bind(schema)
    return schema


# ------------------------------------------------------------------------------------------- scalars
def gid(model: str, record_id: int) -> str:
    return f"gid://gitlab/{model}/{record_id}"


def _global_id_scalar(scalar: GraphQLScalarType, model: str) -> None:
    """GitLab's GlobalIDType: ``gid://gitlab/<model>/<id>``; anything else is a coercion error."""

    def parse_value(value: Any) -> int:
        if not isinstance(value, str):
            raise GraphQLError(f"{json.dumps(value)} is not a valid Global ID")
        match = re.fullmatch(r"gid://gitlab/([\w:]+)/(\d+)", value)
        if match is None:
            raise GraphQLError(f"{json.dumps(value)} is not a valid Global ID")
        if match[1] != model:
            raise GraphQLError(f"{json.dumps(value)} does not represent an instance of {model}")
        return int(match[2])

    def parse_literal(node: ValueNode, _variables: Any = None) -> int:
        if not isinstance(node, StringValueNode):
            raise GraphQLError("Global IDs are strings")
        return parse_value(node.value)

    scalar.parse_value = parse_value  # type: ignore[method-assign]
    scalar.parse_literal = parse_literal  # type: ignore[method-assign,assignment]


def gql_time(dt: datetime | None) -> str | None:
    """GitLab's TimeType: ``Time#iso8601``, whole seconds, UTC as ``Z`` (REST shows milliseconds)."""
    return None if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -------------------------------------------------------------------------------------------- context
@dataclass
class Context:
    """One document being executed (graphql-core's ``context_value``); state lock held by the caller."""

    state: State
    user: User | None
    score: int = 0
    limit: int = 0

    def can_read_runner(self, runner: Runner) -> bool:
        """GitLab's runner policy, ``read_runner``: administrators; any signed-in user for instance runners;
        Maintainer+ of the runner's group (inherited) or of one of its projects."""
        user, state = self.user, self.state
        if user is None:
            return False
        if user.admin or runner.runner_type == "instance_type":
            return True
        if runner.runner_type == "group_type":
            group = state.groups.get(runner.group_id) if runner.group_id is not None else None
            return group is not None and state.group_access(user, group) >= MAINTAINER
        return any(
            state.project_access(user, state.projects[p]) >= MAINTAINER
            for p in runner.project_ids
            if p in state.projects
        )

    def can_update_runner(self, runner: Runner) -> bool:
        return self.user is not None and self.state.can_update_runner(self.user, runner)

    def can_read_sensitive(self, runner: Runner) -> bool:
        """``read_runner_sensitive_data``: readers of the runner, but instance runners only for administrators."""
        if runner.runner_type == "instance_type":
            return self.user is not None and self.user.admin
        return self.can_read_runner(runner)


class ManagerNode(NamedTuple):
    runner: Runner
    manager: Manager


def _ctx(info: GraphQLResolveInfo) -> Context:
    context: Context = info.context
    return context


def not_available() -> GraphQLError:
    return GraphQLError(NOT_AVAILABLE)


# ----------------------------------------------------------------------------------------- pagination
def _micros(dt: datetime | None) -> int:
    return 0 if dt is None else int(dt.timestamp() * 1_000_000)


def _nulls(dt: datetime | None, *, last: bool, descending: bool) -> tuple[int, int]:
    """A sortable (null flag, value) pair; PostgreSQL puts nulls last ascending and first descending."""
    if dt is None:
        return (1 if last else 0, 0)
    value = _micros(dt)
    return (0 if last else 1, -value if descending else value)


# CiRunnerSort → a sort key (ids break ties in the direction of the sort); CREATED_DESC is GitLab's default.
RUNNER_SORTS: dict[str, Callable[[Runner], tuple[int, ...]]] = {
    "CREATED_DESC": lambda r: (-_micros(r.created_at), -r.id),
    "CREATED_ASC": lambda r: (_micros(r.created_at), r.id),
    "CONTACTED_ASC": lambda r: (*_nulls(r.contacted_at, last=True, descending=False), r.id),
    "CONTACTED_DESC": lambda r: (*_nulls(r.contacted_at, last=False, descending=True), -r.id),
    "TOKEN_EXPIRES_AT_ASC": lambda r: (*_nulls(r.token_expires_at, last=True, descending=False), r.id),
    "TOKEN_EXPIRES_AT_DESC": lambda r: (*_nulls(r.token_expires_at, last=False, descending=True), -r.id),
}


def _encode_cursor(order: str, key: tuple[int, ...]) -> str:
    raw = json.dumps({"order": order, "key": list(key)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(order: str, cursor: str) -> tuple[int, ...]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        key = tuple(int(v) for v in data["key"])
        if data["order"] != order:
            raise ValueError(order)
    except (binascii.Error, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise GraphQLError("Please provide a valid cursor") from exc
    return key


def paginate(items: Sequence[Any], order: str, sort_key: Callable[[Any], tuple[int, ...]], args: dict[str, Any]) -> Any:
    """A Relay connection over ``items`` with keyset cursors (stable when runners come and go between pages).

    ``first``/``last`` default to and are cut at :data:`PAGE_SIZE`, as ``default_max_page_size`` does.
    """
    for name in ("first", "last"):
        if args.get(name) is not None and args[name] < 0:
            raise GraphQLError(f"Argument '{name}' on field must be greater than or equal to 0")
    ordered = sorted(items, key=sort_key)
    keys = [sort_key(item) for item in ordered]
    low, high = 0, len(ordered)
    if args.get("after") is not None:
        low = bisect_right(keys, _decode_cursor(order, args["after"]))
    if args.get("before") is not None:
        high = bisect_left(keys, _decode_cursor(order, args["before"]))
    window = list(range(low, max(low, high)))
    first = args.get("first")
    last = args.get("last")
    if first is None and last is None:
        first = PAGE_SIZE
    start, end = 0, len(window)
    if first is not None:
        end = min(end, first, PAGE_SIZE)
    if last is not None:
        start = max(0, end - min(last, PAGE_SIZE))
    page = window[start:end]
    edges = [{"cursor": _encode_cursor(order, keys[i]), "node": ordered[i]} for i in page]
    return {
        "count": len(items),
        "nodes": [edge["node"] for edge in edges],
        "edges": edges,
        "pageInfo": {
            "hasNextPage": end < len(window) or high < len(ordered),
            "hasPreviousPage": start > 0 or low > 0,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


# ------------------------------------------------------------------------------------------- resolvers
def graphql_status(state: State, created_at: datetime, contacted_at: datetime | None, creation_state: str) -> str:
    """``Ci::HasRunnerStatus#status``: stale, never contacted until the creation finished (the first job request),
    then online or offline; unlike the REST status, which looks at ``contacted_at`` only."""
    if state._is_stale(created_at, contacted_at):
        return "STALE"
    if creation_state != "finished":
        return "NEVER_CONTACTED"
    return "ONLINE" if state.is_online(contacted_at) else "OFFLINE"


def _filter_runners(ctx: Context, runners: Iterable[Runner], args: dict[str, Any]) -> list[Runner]:
    """``Ci::RunnersFinder``: search (token or description), paused, status scope, type, tags (all of them)."""
    state = ctx.state
    out = []
    search = args.get("search")
    status = args.get("status")
    tags = args.get("tagList")
    for runner in runners:
        if search and not (runner.token == search or search.lower() in (runner.description or "").lower()):
            continue
        if args.get("paused") is not None and runner.paused != args["paused"]:
            continue
        if status is not None and not state.runner_matches_status(runner, status.lower()):
            continue
        if args.get("type") is not None and runner.runner_type != args["type"].lower():
            continue
        if tags and not set(tags) <= set(runner.tag_list):
            continue
        if ctx.can_read_runner(runner):  # GitLab redacts nodes the caller may not read
            out.append(runner)
    return out


def _runner_connection(ctx: Context, runners: Iterable[Runner], args: dict[str, Any]) -> Any:
    order = args.get("sort") or "CREATED_DESC"
    return paginate(_filter_runners(ctx, runners, args), order, RUNNER_SORTS[order], args)


def _descendant_group_ids(state: State, group: Group) -> set[int]:
    return {g.id for g in state.groups.values() if g.id == group.id or group in state.group_ancestors(g)}


def resolve_runners(_root: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
    ctx = _ctx(info)
    if ctx.user is None or not ctx.user.admin:
        raise not_available()
    return _runner_connection(ctx, ctx.state.runners.values(), args)


def resolve_runner(_root: Any, info: GraphQLResolveInfo, id: int) -> Runner | None:  # GraphQL's argument name
    ctx = _ctx(info)
    runner = ctx.state.runners.get(id)
    return runner if runner is not None and ctx.can_read_runner(runner) else None


def resolve_group(_root: Any, info: GraphQLResolveInfo, fullPath: str) -> Group | None:  # GraphQL's argument name
    ctx = _ctx(info)
    state, user = ctx.state, ctx.user
    group = next((g for g in state.groups.values() if state.group_full_path(g) == fullPath), None)
    if group is None or user is None or not (user.admin or state.group_access(user, group) > 0):
        return None
    return group


def resolve_project(_root: Any, info: GraphQLResolveInfo, fullPath: str) -> Project | None:  # GraphQL's argument name
    ctx = _ctx(info)
    state, user = ctx.state, ctx.user
    project = next((p for p in state.projects.values() if state.project_full_path(p) == fullPath), None)
    if project is None or user is None or not (user.admin or state.project_access(user, project) > 0):
        return None
    return project


def resolve_group_runners(group: Group, info: GraphQLResolveInfo, **args: Any) -> Any:
    """``RunnersFinder#group_runners``: DIRECT = the group's own runners; DESCENDANTS (default) = group runners of
    the group and its subgroups plus project runners of their projects; ALL_AVAILABLE (an experiment behind a
    feature flag, taken as on, with the same permission) adds the ancestors' group runners and the instance
    runners."""
    ctx = _ctx(info)
    state, user = ctx.state, ctx.user
    if user is None or not (user.admin or state.group_access(user, group) >= MAINTAINER):
        raise not_available()
    membership = args.get("membership") or "DESCENDANTS"
    group_ids = {group.id} if membership == "DIRECT" else _descendant_group_ids(state, group)
    project_ids = {p.id for p in state.projects.values() if p.group_id in group_ids}
    if membership == "ALL_AVAILABLE":
        group_ids |= {g.id for g in state.group_ancestors(group)}

    def belongs(runner: Runner) -> bool:
        if runner.runner_type == "group_type":
            return runner.group_id in group_ids
        if runner.runner_type == "project_type":
            return membership != "DIRECT" and bool(project_ids & set(runner.project_ids))
        return membership == "ALL_AVAILABLE"

    return _runner_connection(ctx, [r for r in state.runners.values() if belongs(r)], args)


def resolve_project_runners(project: Project, info: GraphQLResolveInfo, **args: Any) -> Any:
    """``RunnersFinder#project_runners``: ``owned_or_instance_wide`` (the project's own and the instance runners)."""
    ctx = _ctx(info)
    state, user = ctx.state, ctx.user
    if user is None or not (user.admin or state.project_access(user, project) >= MAINTAINER):
        raise not_available()
    runners = [
        r
        for r in state.runners.values()
        if r.runner_type == "instance_type" or (r.runner_type == "project_type" and project.id in r.project_ids)
    ]
    return _runner_connection(ctx, runners, args)


def resolve_managers(runner: Runner, info: GraphQLResolveInfo, **args: Any) -> Any:
    state = _ctx(info).state
    nodes = [ManagerNode(runner, m) for m in runner.managers.values()]
    if args.get("systemId") is not None:
        nodes = [n for n in nodes if n.manager.system_id == args["systemId"]]
    if args.get("status") is not None:
        nodes = [n for n in nodes if _manager_status(state, n.manager) == args["status"]]
    return paginate(nodes, "ID_ASC", lambda n: (n.manager.id,), args)


def _manager_status(state: State, m: Manager) -> str:
    return graphql_status(state, m.created_at, m.contacted_at, m.creation_state)


def _runner_fields() -> dict[str, Callable[..., Any]]:
    def secret(check: Callable[[Context, Runner], bool], value: Callable[[Runner], Any]) -> Callable[..., Any]:
        return lambda r, info: value(r) if check(_ctx(info), r) else None

    return {
        "id": lambda r, _i: gid("Ci::Runner", r.id),
        "accessLevel": lambda r, _i: r.access_level.upper(),
        "contactedAt": lambda r, _i: gql_time(r.contacted_at),
        "createdAt": lambda r, _i: gql_time(r.created_at),
        "description": lambda r, _i: r.description,
        "jobExecutionStatus": lambda r, _i: "IDLE",
        "locked": lambda r, _i: r.locked,
        "maintenanceNote": secret(Context.can_update_runner, lambda r: r.maintenance_note),
        "managers": resolve_managers,
        "maximumTimeout": lambda r, _i: r.maximum_timeout,
        "paused": lambda r, _i: r.paused,
        "runUntagged": lambda r, _i: r.run_untagged,
        "runnerType": lambda r, _i: r.runner_type.upper(),
        "status": lambda r, info: graphql_status(_ctx(info).state, r.created_at, r.contacted_at, r.creation_state),
        "tagList": lambda r, _i: list(r.tag_list),
        "tokenExpiresAt": secret(Context.can_read_sensitive, lambda r: gql_time(r.token_expires_at)),
    }


def _manager_fields() -> dict[str, Callable[..., Any]]:
    return {
        "id": lambda n, _i: gid("Ci::RunnerManager", n.manager.id),
        "architectureName": lambda n, _i: n.manager.architecture,
        "contactedAt": lambda n, _i: gql_time(n.manager.contacted_at),
        "createdAt": lambda n, _i: gql_time(n.manager.created_at),
        "executorName": lambda n, _i: (
            None
            if n.manager.executor is None
            else n.manager.executor
            if n.manager.executor in EXECUTOR_NAMES
            else "unknown"
        ),
        "ipAddress": lambda n, _i: n.manager.ip_address,
        "jobExecutionStatus": lambda n, _i: "IDLE",
        "platformName": lambda n, _i: n.manager.platform,
        "revision": lambda n, _i: n.manager.revision,
        "runner": lambda n, info: n.runner if _ctx(info).can_read_runner(n.runner) else None,
        "status": lambda n, info: _manager_status(_ctx(info).state, n.manager),
        "systemId": lambda n, _i: n.manager.system_id,
        "version": lambda n, _i: n.manager.version,
    }


def _bind(schema: GraphQLSchema) -> None:
    resolvers: dict[str, dict[str, Callable[..., Any]]] = {
        "Query": {
            "group": resolve_group,
            "project": resolve_project,
            "queryComplexity": lambda _r, info: {"score": _ctx(info).score, "limit": _ctx(info).limit},
            "runner": resolve_runner,
            "runners": resolve_runners,
        },
        "Group": {
            "id": lambda g, _i: gid("Group", g.id),
            "fullPath": lambda g, info: _ctx(info).state.group_full_path(g),
            "runners": resolve_group_runners,
        },
        "Project": {
            "id": lambda p, _i: gid("Project", p.id),
            "fullPath": lambda p, info: _ctx(info).state.project_full_path(p),
            "runners": resolve_project_runners,
        },
        "CiRunner": _runner_fields(),
        "CiRunnerManager": _manager_fields(),
    }
    for type_name, fields in resolvers.items():
        type_ = schema.get_type(type_name)
        assert isinstance(type_, GraphQLObjectType), type_name
        for name, resolver in fields.items():
            if name in type_.fields:  # a test may have removed it
                type_.fields[name].resolve = resolver
    for scalar, model in (("CiRunnerID", "Ci::Runner"), ("CiRunnerManagerID", "Ci::RunnerManager")):
        type_ = schema.get_type(scalar)
        assert isinstance(type_, GraphQLScalarType)
        _global_id_scalar(type_, model)


# --------------------------------------------------------------------------------- complexity and depth
def _own_complexity(parent: str, name: str, return_type: str, args: dict[str, Any], child: int) -> int:
    """GitLab's field complexity (``Types::BaseField#field_resolver_complexity``, ``BaseResolver``).

    A plain field costs 1 plus its selections. A field with a resolver costs its selections plus the resolver's
    own complexity (1, +1 when ``sort`` is given, +5 when ``search`` is); a connection then adds that sum times
    ``min(first, last, 100) * 0.01`` (so ``first: 100`` doubles it, and no ``first`` counts as 100), truncated to
    an integer. Nested connections are not multiplied by the outer page size (GitLab's ``complexity_for``
    bypasses graphql-ruby's own page-size multiplication).
    """
    if (parent, name) not in RESOLVER_FIELDS:
        return 1 + child
    score = child + 1 + (1 if args.get("sort") is not None else 0) + (5 if args.get("search") is not None else 0)
    if return_type.endswith("Connection"):
        limit = min(v for v in (args.get("first"), args.get("last"), PAGE_SIZE) if v is not None)
        return int(score + score * (limit * 0.01))
    return score


class _Walk:
    """Complexity and depth of an operation, fragments inlined and ``@skip``/``@include`` applied, with fields of
    the same response key merged (as graphql-ruby's analyzers see a query)."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, variables: dict[str, Any]) -> None:
        self.schema = schema
        self.variables = variables
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}

    def fields(
        self, parent: GraphQLObjectType, nodes: list[FieldNode] | None, op: Any = None
    ) -> dict[str, list[FieldNode]]:
        if op is not None:
            return collect_fields(self.schema, self.fragments, self.variables, parent, op.selection_set)
        return collect_sub_fields(self.schema, self.fragments, self.variables, parent, nodes or [])

    def measure(self, parent: GraphQLObjectType, fields: dict[str, list[FieldNode]]) -> tuple[int, int]:
        """(complexity, depth) of ``fields`` selected on ``parent``."""
        total, depth = 0, 0
        for nodes in fields.values():
            field_def = get_field_def(self.schema, parent, nodes[0])
            if field_def is None:
                continue
            return_type = get_named_type(field_def.type)
            child, child_depth = 0, 0
            if isinstance(return_type, GraphQLObjectType):
                child, child_depth = self.measure(return_type, self.fields(return_type, nodes))
            args = get_argument_values(field_def, nodes[0], self.variables)
            total += _own_complexity(parent.name, nodes[0].name.value, return_type.name, args, child)
            depth = max(depth, 1 + child_depth)
        return total, depth


def complexity(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None = None,
    variables: dict[str, Any] | None = None,
) -> tuple[int, int]:
    """(complexity, depth) of the selected operation with coerced ``variables`` (for tests and the endpoint)."""
    op = get_operation_ast(document, operation_name)
    if op is None:
        return 0, 0
    root = schema.get_root_type(op.operation)
    if root is None:
        return 0, 0
    walk = _Walk(schema, document, variables or {})
    return walk.measure(root, walk.fields(root, None, op))


# --------------------------------------------------------------------------------- validation wording
class _FieldsOnCorrectType(ValidationRule):
    """FieldsOnCorrectTypeRule, worded as GitLab (graphql-ruby) words it, with its ``undefinedField`` code."""

    def enter_field(self, node: FieldNode, *_args: Any) -> None:
        parent = self.context.get_parent_type()
        if parent is None or self.context.get_field_def() is not None:
            return
        name = node.name.value
        self.report_error(
            GraphQLError(
                f"Field '{name}' doesn't exist on type '{parent.name}'",
                node,
                extensions={"code": "undefinedField", "typeName": parent.name, "fieldName": name},
            )
        )


class _KnownArgumentNames(KnownArgumentNamesRule):
    """KnownArgumentNamesRule for fields, worded as graphql-ruby words it (``argumentNotAccepted``)."""

    def enter_argument(self, arg_node: ArgumentNode, *args: Any) -> None:
        context = self.context
        if context.get_argument() is None and context.get_field_def() is not None and context.get_parent_type():
            field_name = args[3][-1].name.value
            name = arg_node.name.value
            context.report_error(
                GraphQLError(
                    f"Field '{field_name}' doesn't accept argument '{name}'",
                    arg_node,
                    extensions={
                        "code": "argumentNotAccepted",
                        "name": field_name,
                        "typeName": "Field",
                        "argumentName": name,
                    },
                )
            )


VALIDATION_RULES = tuple(
    {FieldsOnCorrectTypeRule: _FieldsOnCorrectType, KnownArgumentNamesRule: _KnownArgumentNames}.get(rule, rule)
    for rule in specified_rules
)


# ------------------------------------------------------------------------------------------------ HTTP
@dataclass
class _Document:
    query: Any
    variables: Any
    operation_name: Any
    result: dict[str, Any] | None = None  # set when the document fails before execution
    parsed: DocumentNode | None = None
    operation: OperationDefinitionNode | None = None
    coerced: dict[str, Any] = field(default_factory=dict)
    score: int = 0


def _error(message: str, status: int) -> api.Response:
    return api.Response(status, {"errors": [{"message": message}]})


def _authenticate(ctx: api.Ctx) -> User | None:
    """The caller, ``None`` when anonymous; 401 ``Invalid token`` for a token GitLab refuses here."""
    headers = ctx.req.headers
    token = headers.get("private-token")
    auth = headers.get("authorization", "")
    if not token and auth.lower().startswith("bearer "):
        token = auth[7:].strip()
    if not token:
        value = ctx.req.query.get("private_token")
        token = value if isinstance(value, str) else None
    if not token:
        return None
    state = ctx.state
    access = state.access_tokens.get(token)
    if (
        access is None
        or access.user_id not in state.users
        or access.revoked
        or access.expired(state.clock.now())
        or not ALLOWED_SCOPES & set(access.scopes)
    ):
        raise api.ApiError(401, {"errors": [{"message": "Invalid token"}]})
    user = state.users[access.user_id]
    ctx.info.user = user.username
    return user


def _documents(ctx: api.Ctx) -> tuple[list[_Document], bool]:
    params = ctx.req.query if ctx.req.method in ("GET", "HEAD") else ctx.req.params
    multiplex = isinstance(params.get("_json"), list)
    raw = params["_json"] if multiplex else [params]
    docs = []
    for item in raw:
        entry = item if isinstance(item, dict) else {}
        docs.append(_Document(entry.get("query"), entry.get("variables"), entry.get("operationName")))
    return docs, multiplex


def _decode_variables(doc: _Document) -> None:
    """``Gitlab::Graphql::Variables``: an object, a JSON string (empty = none), or 422."""
    value = doc.variables
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError as exc:
            raise api.ApiError(422, {"errors": [{"message": str(exc)}]}) from exc
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise api.ApiError(422, {"errors": [{"message": f"Unexpected parameter: {json.dumps(value)}"}]})
    doc.variables = value


def _prepare(schema: GraphQLSchema, doc: _Document, depth_limit: int) -> None:
    """Parse, validate, coerce variables, measure: sets ``doc.result`` when the document stops here."""
    if not isinstance(doc.query, str) or not doc.query.strip():
        doc.result = {"errors": [{"message": "No query string was present"}]}
        return
    try:
        doc.parsed = parse(doc.query)
    except GraphQLError as exc:
        doc.result = {"errors": [exc.formatted]}
        return
    errors = validate(schema, doc.parsed, VALIDATION_RULES, max_errors=MAX_VALIDATION_ERRORS)
    if errors:
        # graphql-core appends an "aborted" note past the limit; GitLab answers at most the first five.
        doc.result = {"errors": [e.formatted for e in errors[:MAX_VALIDATION_ERRORS]]}
        return
    name = doc.operation_name if isinstance(doc.operation_name, str) and doc.operation_name else None
    doc.operation = get_operation_ast(doc.parsed, name)
    if doc.operation is None:
        return  # execute() reports the missing or ambiguous operation
    coerced = get_variable_values(schema, doc.operation.variable_definitions or (), doc.variables)
    if isinstance(coerced, list):
        doc.result = {"errors": [e.formatted for e in coerced]}
        return
    doc.coerced = coerced
    doc.score, depth = complexity(schema, doc.parsed, name, coerced)
    if depth > depth_limit:
        doc.result = {"errors": [{"message": f"Query has depth of {depth}, which exceeds max depth of {depth_limit}"}]}


def _execute(schema: GraphQLSchema, doc: _Document, context: Context) -> dict[str, Any]:
    assert doc.parsed is not None
    name = doc.operation_name if isinstance(doc.operation_name, str) and doc.operation_name else None
    if doc.operation is not None and doc.operation.operation != OperationType.QUERY:
        return {"errors": [{"message": f"Schema is not configured for {doc.operation.operation.value}s"}]}
    result = execute_sync(schema, doc.parsed, context_value=context, variable_values=doc.variables, operation_name=name)
    for error in result.errors or ():
        if error.original_error is not None and not isinstance(error.original_error, GraphQLError):
            raise error.original_error  # a bug in the fake: FakeGitLab answers 500 and records it
    return dict(result.formatted)


def handle(ctx: api.Ctx, _match: re.Match[str]) -> api.Response:
    """``GET``/``POST /api/graphql``."""
    current = _SWITCHES.get(ctx.state, Switch())
    if not current.enabled:
        return api.Response(404, {"error": "404 Not Found"})
    user = _authenticate(ctx)
    docs, multiplex = _documents(ctx)
    if sum(len(d.query) for d in docs if isinstance(d.query, str)) > MAX_QUERY_SIZE:
        return _error("Query too large", 422)
    for doc in docs:
        _decode_variables(doc)
    schema = build_schema_for(current.removed_fields)
    role = "anonymous" if user is None else "admin" if user.admin else "authenticated"
    limit = COMPLEXITY_LIMITS[role]
    for doc in docs:
        _prepare(schema, doc, DEPTH_LIMITS["anonymous" if user is None else "authenticated"])
    # graphql-ruby checks a multiplex's complexity as the sum over its queries.
    total = sum(d.score for d in docs if d.result is None)
    results = []
    for doc in docs:
        if doc.result is None and total > limit:
            doc.result = {
                "errors": [{"message": f"Query has complexity of {total}, which exceeds max complexity of {limit}"}]
            }
        if doc.result is None:
            doc.result = _execute(schema, doc, Context(ctx.state, user, score=doc.score, limit=limit))
        results.append(doc.result)
    return api.Response(200, results if multiplex else results[0])


for _method in ("GET", "POST"):
    api.register(_method, re.escape(GRAPHQL_PATH), handle)
