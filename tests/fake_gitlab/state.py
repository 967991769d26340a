"""Data model and business rules of the fake GitLab.

Everything here follows GitLab's public documentation, cited by URL below. The classes are plain
data; :class:`State` is not thread-safe by itself: the owner (:class:`tests.fake_gitlab.FakeGitLab`) holds one
lock around every use of it.
"""

from __future__ import annotations

import copy
import secrets
import string
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .versions import Instance

if TYPE_CHECKING:
    from .deploy_tokens import DeployToken
    from .registry_auth import SigningKey

# runners API
ONLINE_CONTACT_TIMEOUT = timedelta(hours=2)
STALE_TIMEOUT = timedelta(days=7)

RUNNER_TYPES = ("instance_type", "group_type", "project_type")
ACCESS_LEVELS = ("not_protected", "ref_protected")
# token prefixes: glrt- plus a partition marker t1_ (instance), t2_ (group), t3_ (project).
TOKEN_PREFIXES = {"instance_type": "glrt-t1_", "group_type": "glrt-t2_", "project_type": "glrt-t3_"}
TOKEN_ALPHABET = string.ascii_letters + string.digits + "_-"
assert len(TOKEN_ALPHABET) == 64
TOKEN_RANDOM_LENGTH = 20
# runners API: a request without system_id is filed under this manager key.
LEGACY_SYSTEM_ID = "<legacy>"
MAX_TEXT_LENGTH = 1024  # description, maintenance_note (runners API)
MAX_TAGS = 50  # runners API
MIN_MAXIMUM_TIMEOUT = 600  # runners API
# personal access tokens: last_used_at is refreshed at most this often (16.1+)
LAST_USED_REFRESH = timedelta(minutes=10)
MAX_LAST_USED_IPS = 5

# GitLab access levels
DEVELOPER = 30
MAINTAINER = 40
OWNER = 50


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 UTC with milliseconds, e.g. ``2024-06-09T11:12:02.507Z`` (REST API); ``None`` stays ``None``."""
    if dt is None:
        return None
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_time(value: str) -> datetime:
    """Parse an ISO 8601 timestamp (``Z`` suffix allowed); naive values are taken as UTC."""
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def mask_token(token: str | None) -> str | None:
    """A token shown in the control API and in reprs: prefix up to the first dash, an ellipsis, the last 4."""
    if token is None:
        return None
    prefix = token.split("-", 1)[0] + "-" if "-" in token else ""
    return f"{prefix}\u2026{token[-4:]}"


class Clock:
    """The injectable clock behind every time rule (status, expiry, ``contacted_at``, ``created_at``).

    By default it follows real UTC time plus an offset; :meth:`advance` and :meth:`set` move that offset. A frozen
    clock (``Clock.frozen()`` or :meth:`freeze`) stands still until advanced, which makes tests exact.
    """

    def __init__(self, start: datetime | None = None, *, frozen: bool = False) -> None:
        self._lock = threading.Lock()
        self._offset = timedelta(0)
        self._frozen_at: datetime | None = None
        if frozen:
            self.freeze()
        if start is not None:
            self.set(start)

    @classmethod
    def frozen(cls, at: datetime | None = None) -> Clock:
        """A clock standing still at ``at`` (default: the current real time)."""
        return cls(at, frozen=True)

    @property
    def is_frozen(self) -> bool:
        return self._frozen_at is not None

    def now(self) -> datetime:
        """The current fake time, an aware UTC datetime."""
        with self._lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward (or back, if negative) and return the new time."""
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at += timedelta(seconds=seconds)
                return self._frozen_at
            self._offset += timedelta(seconds=seconds)
            return datetime.now(UTC) + self._offset

    def set(self, dt: datetime) -> None:
        """Make ``now()`` return ``dt``; a running clock keeps ticking from there, a frozen one stays at ``dt``."""
        if dt.tzinfo is None:
            raise ValueError("Clock.set() needs an aware datetime")
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at = dt.astimezone(UTC)
            else:
                self._offset = dt.astimezone(UTC) - datetime.now(UTC)

    def freeze(self) -> datetime:
        """Stop the clock at the current fake time."""
        now = self.now()
        with self._lock:
            self._frozen_at = now
        return now

    def unfreeze(self) -> None:
        """Let a frozen clock tick again from where it stands."""
        with self._lock:
            if self._frozen_at is not None:
                self._offset = self._frozen_at - datetime.now(UTC)
                self._frozen_at = None


@dataclass
class User:
    id: int
    username: str
    admin: bool = False
    name: str = ""
    bot: bool = False  # the bot user behind a group or project access token


@dataclass
class Group:
    """A group; members inherit their role in every subgroup and project below (GitLab inherited membership).

    The interval fields are the namespace settings of runner token expiry (seconds or ``None``).
    """

    id: int
    path: str
    name: str
    parent_id: int | None = None
    owners: set[int] = field(default_factory=set)
    maintainers: set[int] = field(default_factory=set)
    developers: set[int] = field(default_factory=set)
    runner_token_expiration_interval: int | None = None
    subgroup_runner_token_expiration_interval: int | None = None
    project_runner_token_expiration_interval: int | None = None


@dataclass
class Project:
    """A project; ``runner_token_expiration_interval`` is its CI/CD setting of runner token expiry."""

    id: int
    path: str
    name: str
    group_id: int | None = None
    owners: set[int] = field(default_factory=set)
    maintainers: set[int] = field(default_factory=set)
    developers: set[int] = field(default_factory=set)
    runner_token_expiration_interval: int | None = None
    created_at: datetime | None = None
    # private, internal or public (https://docs.gitlab.com/user/public_access/); only the container registry's
    # token check reads it (anonymous pulls of public projects).
    visibility: str = "private"


@dataclass
class AccessToken:
    """A personal access token, a group/project access token (a PAT of a bot user, ``resource_type`` set) or an
    OAuth token (``kind="oauth"``, accepted as ``Authorization: Bearer`` only); scopes as in REST authentication.

    ``expires_at`` is a date, as in GitLab: the token stops working at 00:00 UTC of that day
    (https://docs.gitlab.com/user/profile/personal_access_tokens/#access-token-expiration). Each rotation links
    the new token to the old through ``previous_personal_access_token_id`` (a token family).
    """

    token: str = field(repr=False)
    user_id: int
    scopes: list[str]
    expires_at: date | None = None
    revoked: bool = False
    id: int = 0
    name: str = ""
    description: str | None = None
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    last_used_ips: list[str] = field(default_factory=list)
    previous_personal_access_token_id: int | None = None
    kind: str = "personal"  # or "oauth"
    resource_type: str | None = None  # "group" or "project" for group and project access tokens
    resource_id: int | None = None
    access_level: int | None = None  # the bot's role in that group or project

    @property
    def expires_at_instant(self) -> datetime | None:
        """00:00 UTC of ``expires_at``: the first instant the token is refused."""
        day = self.expires_at
        return None if day is None else datetime(day.year, day.month, day.day, tzinfo=UTC)

    def expired(self, now: datetime) -> bool:
        instant = self.expires_at_instant
        return instant is not None and instant <= now

    def active(self, now: datetime) -> bool:
        return not self.revoked and not self.expired(now)

    @property
    def masked_token(self) -> str | None:
        return mask_token(self.token)


@dataclass
class ReuseDetection:
    """One trigger of GitLab's token reuse detection: a revoked token presented on a rotate path."""

    token_id: int  # the revoked token that was presented
    revoked_ids: list[int]  # its active descendants, revoked by the trigger
    method: str
    path: str  # relative to /api/v4
    time: datetime


@dataclass
class TokenCounters:
    """Access-token failures the fake saw, by ``"METHOD path"`` (path relative to ``/api/v4``)."""

    revoked_calls: Counter[str] = field(default_factory=Counter)
    expired_calls: Counter[str] = field(default_factory=Counter)
    reuse_detections: list[ReuseDetection] = field(default_factory=list)

    @property
    def revoked_total(self) -> int:
        return sum(self.revoked_calls.values())

    @property
    def expired_total(self) -> int:
        return sum(self.expired_calls.values())

    def snapshot(self) -> TokenCounters:
        return TokenCounters(
            Counter(self.revoked_calls),
            Counter(self.expired_calls),
            [copy.copy(d) for d in self.reuse_detections],
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "revoked_calls": dict(self.revoked_calls),
            "expired_calls": dict(self.expired_calls),
            "revoked_total": self.revoked_total,
            "expired_total": self.expired_total,
            "reuse_detections": [
                {
                    "token_id": d.token_id,
                    "revoked_ids": list(d.revoked_ids),
                    "method": d.method,
                    "path": d.path,
                    "time": iso(d.time),
                }
                for d in self.reuse_detections
            ],
        }


@dataclass
class Settings:
    """Instance settings (runner token expiry; seconds, ``None`` = no expiry), applied at creation and every reset."""

    runner_token_expiration_interval: int | None = None
    group_runner_token_expiration_interval: int | None = None
    project_runner_token_expiration_interval: int | None = None
    # Test knob, not a GitLab setting: deploy tokens created with an expiry date expire this many seconds after
    # creation instead of at 00:00 UTC of the date, so that renewals can be tested in seconds.
    deploy_token_lifetime_seconds: int | None = None
    # GitLab's application setting (default true, 17.3): a rotated access token without ``expires_at`` gets
    # today + 7 days when true, no expiry when false; new tokens may not last beyond today + 365 days when true.
    require_personal_access_token_expiry: bool = True
    # Which GitLab's deploy-token expiry rule applies (see deploy_tokens.py): "instant" (current GitLab: refused
    # from the exact expires_at instant) or "legacy" (older GitLab: looked up with `expires_at >= now`, judged by
    # comparing the expiry with the host's local date).
    deploy_token_expiry_mode: str = "instant"
    # The UTC offset of the GitLab host's local time zone, in minutes; only "legacy" expiry reads it.
    host_utc_offset_minutes: int = 0

    FIELDS = (
        "runner_token_expiration_interval",
        "group_runner_token_expiration_interval",
        "project_runner_token_expiration_interval",
        "deploy_token_lifetime_seconds",
        "require_personal_access_token_expiry",
        "deploy_token_expiry_mode",
        "host_utc_offset_minutes",
    )
    TEXT_FIELDS = ("deploy_token_expiry_mode",)

    def as_dict(self) -> dict[str, int | str | bool | None]:
        return {name: getattr(self, name) for name in self.FIELDS}


@dataclass
class Manager:
    """A runner manager (``ci_runner_machines``, runners API), one per ``(runner, system_id)``."""

    id: int
    system_id: str
    created_at: datetime
    contacted_at: datetime | None = None
    version: str | None = None
    revision: str | None = None
    platform: str | None = None
    architecture: str | None = None
    executor: str | None = None
    ip_address: str | None = None
    config: dict[str, Any] | None = None
    creation_state: str = "finished"

    def snapshot(self) -> Manager:
        clone = copy.copy(self)
        clone.config = copy.deepcopy(self.config)
        return clone


@dataclass
class Runner:
    """A runner (``ci_runners``, runners API). ``paused`` is the negation of GitLab's ``active``."""

    id: int
    runner_type: str
    token: str = field(repr=False)
    token_expires_at: datetime | None
    created_at: datetime
    description: str = ""
    maintenance_note: str | None = None
    paused: bool = False
    locked: bool = False
    run_untagged: bool = True
    tag_list: list[str] = field(default_factory=list)
    access_level: str = "not_protected"
    maximum_timeout: int | None = None
    contacted_at: datetime | None = None
    creation_state: str = "started"
    group_id: int | None = None
    project_ids: list[int] = field(default_factory=list)
    managers: dict[str, Manager] = field(default_factory=dict)
    creator_id: int | None = None
    updated_at: datetime | None = None
    registration_type: str = "authenticated_user"
    name: str | None = None
    # opaque job-queue value sent back as X-GitLab-Last-Update (job requests)
    queue_value: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)

    @property
    def active(self) -> bool:
        return not self.paused

    def snapshot(self) -> Runner:
        """An independent copy (cheaper than ``copy.deepcopy``; datetimes are immutable)."""
        clone = copy.copy(self)
        clone.tag_list = list(self.tag_list)
        clone.project_ids = list(self.project_ids)
        clone.managers = {key: manager.snapshot() for key, manager in self.managers.items()}
        return clone

    @property
    def masked_token(self) -> str | None:
        return mask_token(self.token)


@dataclass
class Call:
    """One API call as the fake saw it. Never holds a secret: ``query`` values of ``*token*`` keys are filtered,
    the body is kept as its key names only, plus ``params``: a whitelist of non-secret body values."""

    method: str
    path: str
    status: int  # 0 when no response was sent ("drop" faults)
    query: dict[str, Any]
    body_keys: list[str]
    time: datetime
    user: str | None = None
    runner_id: int | None = None
    fault: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0  # real seconds spent handling the request
    user_agent: str = ""  # who called: a containerd pulling an image, the operator, a test's client


@dataclass
class Job:
    """A pending CI job handed out by ``POST /jobs/request`` (job requests)."""

    id: int
    payload: dict[str, Any] = field(repr=False)
    runner_id: int | None = None
    tags: list[str] = field(default_factory=list)
    assigned_runner_id: int | None = None
    assigned_system_id: str | None = None


def to_sentence(messages: list[str]) -> str:
    """Rails ``Array#to_sentence``: "a", "a and b", "a, b, and c"."""
    if len(messages) <= 1:
        return "".join(messages)
    if len(messages) == 2:
        return f"{messages[0]} and {messages[1]}"
    return ", ".join(messages[:-1]) + ", and " + messages[-1]


class State:
    """Users, groups, projects, tokens, runners and their managers, with GitLab's rules over them."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.settings = Settings()
        self.users: dict[int, User] = {}
        self.groups: dict[int, Group] = {}
        self.projects: dict[int, Project] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.runners: dict[int, Runner] = {}
        self.token_index: dict[str, int] = {}
        self.revoked_tokens: set[str] = set()
        self.calls: list[Call] = []
        self.pending_jobs: list[Job] = []
        self.assigned_jobs: list[Job] = []
        self.deploy_tokens: dict[int, DeployToken] = {}
        self.next_deploy_token_id = 1
        self.instance = Instance()
        self.token_counters = TokenCounters()
        self.next_access_token_id = 1
        self.registry_signing_key: SigningKey | None = None  # made on first use by registry_auth, kept on reset
        self._next_user_id = 1
        self._next_runner_id = 1
        self._next_manager_id = 1
        self._next_job_id = 1

    # ----------------------------------------------------------------- setup
    def add_user(self, username: str, *, admin: bool = False, name: str | None = None, bot: bool = False) -> User:
        user = User(id=self._next_user_id, username=username, admin=admin, name=name or username.title(), bot=bot)
        self._next_user_id += 1
        self.users[user.id] = user
        return user

    def add_group(
        self,
        group_id: int,
        path: str,
        *,
        owners: list[User] | None = None,
        maintainers: list[User] | None = None,
        developers: list[User] | None = None,
        parent_id: int | None = None,
        name: str | None = None,
    ) -> Group:
        if parent_id is not None and parent_id not in self.groups:
            raise ValueError(f"parent group {parent_id} does not exist")
        group = Group(
            id=group_id,
            path=path,
            name=name or path,
            parent_id=parent_id,
            owners={u.id for u in owners or []},
            maintainers={u.id for u in maintainers or []},
            developers={u.id for u in developers or []},
        )
        self.groups[group_id] = group
        return group

    def add_project(
        self,
        project_id: int,
        path: str,
        *,
        group_id: int | None = None,
        owners: list[User] | None = None,
        maintainers: list[User] | None = None,
        developers: list[User] | None = None,
        name: str | None = None,
    ) -> Project:
        if group_id is not None and group_id not in self.groups:
            raise ValueError(f"group {group_id} does not exist")
        project = Project(
            id=project_id,
            path=path,
            name=name or path,
            group_id=group_id,
            owners={u.id for u in owners or []},
            maintainers={u.id for u in maintainers or []},
            developers={u.id for u in developers or []},
            created_at=self.clock.now(),
        )
        self.projects[project_id] = project
        return project

    def add_access_token(
        self,
        token: str,
        user: User,
        *,
        scopes: list[str] | None = None,
        expires_at: datetime | date | None = None,
        revoked: bool = False,
        name: str | None = None,
        description: str | None = None,
        kind: str = "personal",
        previous_id: int | None = None,
    ) -> AccessToken:
        """Register a token. A datetime ``expires_at`` is cut to its UTC date, as GitLab's Date parameter is."""
        if kind not in ("personal", "oauth"):
            raise ValueError(f"unknown token kind {kind!r}")
        if token in self.access_tokens:
            raise ValueError("an access token with this value exists")
        if isinstance(expires_at, datetime):
            expires_at = expires_at.astimezone(UTC).date()
        token_id = self.next_access_token_id
        self.next_access_token_id += 1
        at = AccessToken(
            token=token,
            user_id=user.id,
            scopes=list(scopes if scopes is not None else ["create_runner", "manage_runner"]),
            expires_at=expires_at,
            revoked=revoked,
            id=token_id,
            name=name if name is not None else f"token-{token_id}",
            description=description,
            created_at=self.clock.now(),
            previous_personal_access_token_id=previous_id,
            kind=kind,
        )
        self.access_tokens[token] = at
        return at

    def access_token_by_id(self, token_id: int) -> AccessToken | None:
        return next((t for t in self.access_tokens.values() if t.id == token_id and t.kind == "personal"), None)

    def revoke_token_family(self, token: AccessToken) -> list[int]:
        """Revoke every active descendant of ``token`` (tokens rotated from it, recursively); their ids."""
        now = self.clock.now()
        children: dict[int, list[AccessToken]] = {}
        for t in self.access_tokens.values():
            if t.previous_personal_access_token_id is not None:
                children.setdefault(t.previous_personal_access_token_id, []).append(t)
        revoked: list[int] = []
        pending, seen = list(children.get(token.id, [])), {token.id}
        while pending:
            t = pending.pop(0)
            if t.id in seen:
                continue
            seen.add(t.id)
            if t.active(now):
                t.revoked = True
                revoked.append(t.id)
            pending.extend(children.get(t.id, []))
        return sorted(revoked)

    def note_token_use(self, token: AccessToken, ip: str) -> None:
        """``last_used_at`` refreshed at most every 10 minutes; the last 5 distinct client IPs (inferred)."""
        now = self.clock.now()
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_REFRESH:
            token.last_used_at = now
        if ip in token.last_used_ips:
            token.last_used_ips.remove(ip)
        token.last_used_ips.insert(0, ip)
        del token.last_used_ips[MAX_LAST_USED_IPS:]

    def clear_runtime(self) -> None:
        """Drop runners, calls and jobs; keep users, groups, projects, access tokens and settings.

        The dropped runners' tokens join ``revoked_tokens``, which keeps every token ever issued and retired, so
        that tests scanning output for leaked secrets still know them after a reset.
        """
        self.revoked_tokens.update(self.token_index)
        self.revoked_tokens.update(t.token for t in self.deploy_tokens.values())
        self.deploy_tokens.clear()
        self.runners.clear()
        self.token_index.clear()
        self.calls.clear()
        self.token_counters = TokenCounters()
        self.pending_jobs.clear()
        self.assigned_jobs.clear()

    # -------------------------------------------------------------- namespaces
    def group_ancestors(self, group: Group) -> list[Group]:
        """Strict ancestors, nearest first."""
        out: list[Group] = []
        seen = {group.id}
        parent_id = group.parent_id
        while parent_id is not None and parent_id in self.groups and parent_id not in seen:
            parent = self.groups[parent_id]
            out.append(parent)
            seen.add(parent_id)
            parent_id = parent.parent_id
        return out

    def group_full_path(self, group: Group) -> str:
        return "/".join(g.path for g in [*reversed(self.group_ancestors(group)), group])

    def group_full_name(self, group: Group) -> str:
        return " / ".join(g.name for g in [*reversed(self.group_ancestors(group)), group])

    def project_groups(self, project: Project) -> list[Group]:
        """The project's group and that group's ancestors, nearest first."""
        if project.group_id is None or project.group_id not in self.groups:
            return []
        group = self.groups[project.group_id]
        return [group, *self.group_ancestors(group)]

    def project_namespace_path(self, project: Project) -> str:
        if project.group_id is not None and project.group_id in self.groups:
            return self.group_full_path(self.groups[project.group_id])
        owner = next((self.users[u] for u in sorted(project.owners) if u in self.users), None)
        return owner.username if owner else "root"

    def project_full_path(self, project: Project) -> str:
        return f"{self.project_namespace_path(project)}/{project.path}"

    def project_full_name(self, project: Project) -> str:
        if project.group_id is not None and project.group_id in self.groups:
            return f"{self.group_full_name(self.groups[project.group_id])} / {project.name}"
        return f"{self.project_namespace_path(project)} / {project.name}"

    def find_group(self, ref: str) -> Group | None:
        """By numeric id or full path (``:id`` of the REST API may be either)."""
        if ref.isdigit():
            return self.groups.get(int(ref))
        return next((g for g in self.groups.values() if self.group_full_path(g) == ref), None)

    def find_project(self, ref: str) -> Project | None:
        if ref.isdigit():
            return self.projects.get(int(ref))
        return next((p for p in self.projects.values() if self.project_full_path(p) == ref), None)

    # ------------------------------------------------------------- permissions
    @staticmethod
    def _direct_level(user: User, owners: set[int], maintainers: set[int], developers: set[int]) -> int:
        if user.id in owners:
            return OWNER
        if user.id in maintainers:
            return MAINTAINER
        if user.id in developers:
            return DEVELOPER
        return 0

    def group_access(self, user: User, group: Group) -> int:
        """Highest role of ``user`` in ``group``, counting membership inherited from ancestors."""
        return max(
            self._direct_level(user, g.owners, g.maintainers, g.developers)
            for g in [group, *self.group_ancestors(group)]
        )

    def project_access(self, user: User, project: Project) -> int:
        levels = [self._direct_level(user, project.owners, project.maintainers, project.developers)]
        levels += [self.group_access(user, g) for g in self.project_groups(project)[:1]]
        return max(levels)

    def can_create_runner(self, user: User, runner_type: str, group: Group | None, project: Project | None) -> bool:
        """create a runner permissions: instance = admin; group = group Owner; project = Maintainer+ (permissions)."""
        if user.admin:
            return True
        if runner_type == "group_type" and group is not None:
            return self.group_access(user, group) >= OWNER
        if runner_type == "project_type" and project is not None:
            return self.project_access(user, project) >= MAINTAINER
        return False

    def owns_runner(self, user: User, runner: Runner) -> bool:
        """Membership-based ownership (admin status not counted): group Owner / project Maintainer+."""
        if runner.runner_type == "group_type" and runner.group_id in self.groups:
            return self.group_access(user, self.groups[runner.group_id]) >= OWNER
        if runner.runner_type == "project_type":
            return any(
                self.project_access(user, self.projects[p]) >= MAINTAINER
                for p in runner.project_ids
                if p in self.projects
            )
        return False

    def can_update_runner(self, user: User, runner: Runner) -> bool:
        """runners API: admin for instance runners, group Owner, project Maintainer."""
        return user.admin or self.owns_runner(user, runner)

    def can_read_runner(self, user: User, runner: Runner) -> bool:
        """runners API: any user may read instance runners; others need the update right."""
        return runner.runner_type == "instance_type" or self.can_update_runner(user, runner)

    # ------------------------------------------------------------------ tokens
    @staticmethod
    def _min_interval(values: list[int | None]) -> int | None:
        present = [v for v in values if v is not None]
        return min(present) if present else None

    def token_interval(self, runner: Runner) -> int | None:
        """The expiration interval of runner token expiry for this runner (seconds or ``None``)."""
        s = self.settings
        if runner.runner_type == "instance_type":
            return s.runner_token_expiration_interval
        if runner.runner_type == "group_type":
            group = self.groups.get(runner.group_id) if runner.group_id is not None else None
            values = [s.group_runner_token_expiration_interval]
            if group is not None:
                values += [g.subgroup_runner_token_expiration_interval for g in self.group_ancestors(group)]
                values.append(group.runner_token_expiration_interval)
            return self._min_interval(values)
        values = [s.project_runner_token_expiration_interval]
        for pid in runner.project_ids:
            project = self.projects.get(pid)
            if project is None:
                continue
            values += [g.project_runner_token_expiration_interval for g in self.project_groups(project)]
            values.append(project.runner_token_expiration_interval)
        return self._min_interval(values)

    def compute_token_expiry(self, runner: Runner) -> datetime | None:
        interval = self.token_interval(runner)
        return None if interval is None else self.clock.now() + timedelta(seconds=interval)

    def _new_token(self, runner_type: str) -> str:
        while True:
            # 64 symbols: the low 6 bits of a random byte pick one uniformly
            body = "".join(TOKEN_ALPHABET[b & 63] for b in secrets.token_bytes(TOKEN_RANDOM_LENGTH))
            token = TOKEN_PREFIXES[runner_type] + body
            if token not in self.token_index and token not in self.revoked_tokens:
                return token

    def token_expired(self, runner: Runner) -> bool:
        """runner token expiry: a token at or past ``token_expires_at`` is refused everywhere."""
        return runner.token_expires_at is not None and runner.token_expires_at <= self.clock.now()

    def runner_for_token(self, token: str) -> Runner | None:
        """The live runner owning ``token``, expired or not."""
        runner_id = self.token_index.get(token)
        return self.runners.get(runner_id) if runner_id is not None else None

    def rotate_token(self, runner: Runner) -> str:
        """runners API: new token at once, old one dead, expiry recomputed from the current settings."""
        self.revoked_tokens.add(runner.token)
        self.token_index.pop(runner.token, None)
        runner.token = self._new_token(runner.runner_type)
        self.token_index[runner.token] = runner.id
        runner.token_expires_at = self.compute_token_expiry(runner)
        runner.updated_at = self.clock.now()
        return runner.token

    # ----------------------------------------------------------------- runners
    def create_runner(
        self,
        *,
        runner_type: str,
        creator: User | None,
        group_id: int | None = None,
        project_ids: list[int] | None = None,
        description: str = "",
        maintenance_note: str | None = None,
        paused: bool = False,
        locked: bool = False,
        run_untagged: bool = True,
        tag_list: list[str] | None = None,
        access_level: str = "not_protected",
        maximum_timeout: int | None = None,
    ) -> Runner:
        """Create a runner in state ``started`` with a fresh ``glrt-`` token (create a runner)."""
        now = self.clock.now()
        runner = Runner(
            id=self._next_runner_id,
            runner_type=runner_type,
            token=self._new_token(runner_type),
            token_expires_at=None,
            created_at=now,
            updated_at=now,
            description=description,
            maintenance_note=maintenance_note,
            paused=paused,
            locked=locked,
            run_untagged=run_untagged,
            tag_list=list(tag_list or []),
            access_level=access_level,
            maximum_timeout=maximum_timeout,
            group_id=group_id,
            project_ids=list(project_ids or []),
            creator_id=creator.id if creator else None,
        )
        self._next_runner_id += 1
        runner.token_expires_at = self.compute_token_expiry(runner)
        self.runners[runner.id] = runner
        self.token_index[runner.token] = runner.id
        return runner

    def delete_runner(self, runner: Runner) -> None:
        """runners API: the runner, all its managers and its token go at once."""
        self.runners.pop(runner.id, None)
        self.token_index.pop(runner.token, None)
        self.revoked_tokens.add(runner.token)
        runner.managers.clear()

    def heartbeat(
        self,
        runner: Runner,
        *,
        system_id: str | None,
        info: dict[str, Any] | None,
        ip_address: str | None,
        finish: bool,
    ) -> Manager:
        """runners API: touch the runner and find-or-create the manager, then update it from ``info``."""
        now = self.clock.now()
        runner.contacted_at = now
        if finish:
            runner.creation_state = "finished"
        key = system_id or LEGACY_SYSTEM_ID
        manager = runner.managers.get(key)
        if manager is None:
            manager = Manager(id=self._next_manager_id, system_id=key, created_at=now)
            self._next_manager_id += 1
            runner.managers[key] = manager
        manager.contacted_at = now
        manager.creation_state = "finished"
        manager.ip_address = ip_address
        if info:
            for attr in ("version", "revision", "platform", "architecture", "executor"):
                value = info.get(attr)
                if isinstance(value, str) and value:
                    setattr(manager, attr, value)
            config = info.get("config")
            if isinstance(config, dict):
                manager.config = config
        return manager

    # ------------------------------------------------------------------ status
    def _is_stale(self, created_at: datetime | None, contacted_at: datetime | None) -> bool:
        if created_at is None:
            return False
        latest = max(created_at, contacted_at) if contacted_at else created_at
        return latest <= self.clock.now() - STALE_TIMEOUT

    def is_online(self, contacted_at: datetime | None) -> bool | None:
        """runners API: ``contacted_at > now - 2h``; ``None`` when never contacted."""
        if contacted_at is None:
            return None
        return contacted_at > self.clock.now() - ONLINE_CONTACT_TIMEOUT

    def runner_status(self, runner: Runner) -> str:
        """The deprecated REST status of runners API: stale, never_contacted, online/offline, paused."""
        if self._is_stale(runner.created_at, runner.contacted_at):
            return "stale"
        if runner.contacted_at is None:
            return "never_contacted"
        if runner.active:
            return "online" if self.is_online(runner.contacted_at) else "offline"
        return "paused"

    def manager_status(self, manager: Manager) -> str:
        """runners API: stale, never_contacted (creation not finished), online/offline."""
        if self._is_stale(manager.created_at, manager.contacted_at):
            return "stale"
        if manager.creation_state != "finished":
            return "never_contacted"
        return "online" if self.is_online(manager.contacted_at) else "offline"

    def runner_matches_status(self, runner: Runner, status: str) -> bool:
        """The list filters of runners API."""
        if status == "online":
            return bool(self.is_online(runner.contacted_at))
        if status == "offline":
            return runner.contacted_at is not None and not self.is_online(runner.contacted_at)
        if status == "never_contacted":
            return runner.contacted_at is None
        if status == "stale":
            return self._is_stale(runner.created_at, runner.contacted_at)
        if status == "active":
            return runner.active
        if status == "paused":
            return runner.paused
        return False

    def latest_manager(self, runner: Runner) -> Manager | None:
        contacted = [m for m in runner.managers.values() if m.contacted_at is not None]
        return max(contacted, key=lambda m: m.contacted_at or m.created_at) if contacted else None

    # -------------------------------------------------------------------- jobs
    def enqueue_job(
        self,
        *,
        runner_id: int | None = None,
        tags: list[str] | None = None,
        payload: dict[str, Any] | None = None,
    ) -> Job:
        """Queue a job; runners that could take it get a new queue value (job requests "ticked")."""
        job = Job(id=self._next_job_id, payload=dict(payload or {}), runner_id=runner_id, tags=list(tags or []))
        self._next_job_id += 1
        self.pending_jobs.append(job)
        for runner in self.runners.values():
            if self._can_pick(runner, job):
                runner.queue_value = secrets.token_hex(16)
        return job

    @staticmethod
    def _can_pick(runner: Runner, job: Job) -> bool:
        if job.runner_id is not None and job.runner_id != runner.id:
            return False
        if not job.tags:
            return runner.run_untagged
        return set(job.tags) <= set(runner.tag_list)

    def take_job(self, runner: Runner, system_id: str | None) -> Job | None:
        for job in self.pending_jobs:
            if self._can_pick(runner, job):
                self.pending_jobs.remove(job)
                job.assigned_runner_id = runner.id
                job.assigned_system_id = system_id or LEGACY_SYSTEM_ID
                self.assigned_jobs.append(job)
                return job
        return None
