"""What GitLab's API answers, as typed values (no HTTP here): the GitLab adapter builds them from GitLab's JSON and
raises `GitLabError` for what went wrong; the use cases and pure planners read them. Tokens never show in a repr
or a message."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from .errors import ReconcileError, register_classifier
from .reasons import Reason
from .times import parse_time


class UnusableAnswer(ValueError):
    """A 2xx answer of GitLab's JSON that lacks what the call must get back (a token of the right kind, an id).
    Its message says what is missing and never quotes the value."""


# GitLab's token prefixes (https://docs.gitlab.com/security/tokens/#token-prefixes): a runner authentication token
# starts with `glrt-`, a deploy token (GitLab 16.7 and later) with `gldt-`; an instance may put its own prefix in
# front (https://docs.gitlab.com/administration/settings/account_and_limit_settings/#instance-token-prefix).
RUNNER_TOKEN_PREFIX = "glrt-"
DEPLOY_TOKEN_PREFIX = "gldt-"
ACCESS_TOKEN_PREFIX = "glpat-"
_TOKEN_SHAPES = {
    prefix: re.compile(rf"[A-Za-z0-9_-]*?{re.escape(prefix)}[A-Za-z0-9_.-]+")
    for prefix in (RUNNER_TOKEN_PREFIX, DEPLOY_TOKEN_PREFIX, ACCESS_TOKEN_PREFIX)
}


_JSON_TYPES = {bool: "a boolean", int: "a number", float: "a number", dict: "an object", list: "an array"}


def usable_token(value: Any, prefix: str) -> str:
    """`value` when it is a token of the kind `prefix` names; UnusableAnswer otherwise (null, empty, not a string,
    another kind of token): such a value is never stored, since nothing could authenticate with it."""
    if not isinstance(value, str) or not value:
        shape = "empty" if value == "" else _JSON_TYPES.get(type(value), "null")
        raise UnusableAnswer(f"its token is {shape}, not a {prefix} token")
    if _TOKEN_SHAPES[prefix].fullmatch(value) is None:
        raise UnusableAnswer(f"its token is not of the {prefix} shape GitLab issues")
    return value


def created_id(value: Any) -> int:
    """The id of what a create answer names: a positive JSON integer (not a boolean, a float or a string)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UnusableAnswer("its id is not a positive integer")
    return value


@dataclass(frozen=True)
class IssuedToken:
    """A runner token as GitLab hands it out (create and reset)."""

    token: str
    expires_at: datetime | None

    def __repr__(self) -> str:  # keep the token out of any log or traceback that prints this object
        return f"IssuedToken(token=<redacted>, expires_at={self.expires_at!r})"


@dataclass(frozen=True)
class CreatedRunner:
    id: int
    token: IssuedToken


@dataclass(frozen=True)
class RunnerDetails:
    """The fields of `GET /runners/:id` the operator compares and reports."""

    id: int
    runner_type: str
    description: str
    paused: bool
    tag_list: tuple[str, ...]
    run_untagged: bool
    locked: bool
    access_level: str
    maximum_timeout: int | None
    maintenance_note: str | None
    status: str | None
    contacted_at: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunnerDetails:
        return cls(
            id=int(data["id"]),
            runner_type=str(data.get("runner_type") or ""),
            description=str(data.get("description") or ""),
            paused=bool(data.get("paused", not data.get("active", True))),
            tag_list=tuple(sorted(data.get("tag_list") or ())),
            run_untagged=bool(data.get("run_untagged", True)),
            locked=bool(data.get("locked", False)),
            access_level=str(data.get("access_level") or "not_protected"),
            maximum_timeout=data.get("maximum_timeout"),
            maintenance_note=data.get("maintenance_note"),
            status=data.get("status"),
            contacted_at=data.get("contacted_at"),
        )


@dataclass(frozen=True)
class RunnerSummary:
    """A list item of the runner list endpoints."""

    id: int
    description: str
    status: str | None
    created_at: str | None


@dataclass(frozen=True)
class RunnerManager:
    """An element of `GET /runners/:id/managers`."""

    id: int
    system_id: str
    status: str | None
    contacted_at: str | None
    version: str | None


@dataclass(frozen=True)
class DeployTokenInfo:
    """A deploy token as GitLab lists it (never with its value)."""

    id: int
    name: str
    username: str
    expires_at: datetime | None
    revoked: bool
    expired: bool
    scopes: tuple[str, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeployTokenInfo:
        return cls(
            id=int(data["id"]),
            name=str(data.get("name") or ""),
            username=str(data.get("username") or ""),
            expires_at=parse_time(data.get("expires_at")),
            revoked=bool(data.get("revoked")),
            expired=bool(data.get("expired")),
            scopes=tuple(str(s) for s in data.get("scopes") or ()),
        )

    def active(self, now: datetime) -> bool:
        """Usable now: GitLab's `expired` flag lags (it compares dates), so the instant is checked too."""
        return not self.revoked and not self.expired and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True)
class CreatedDeployToken:
    info: DeployTokenInfo
    token: str

    def __repr__(self) -> str:  # keep the token out of any log or traceback that prints this object
        return f"CreatedDeployToken(info={self.info!r}, token=<redacted>)"


@dataclass(frozen=True)
class InstanceInfo:
    """`GET /metadata` (`/version` before 15.2, https://docs.gitlab.com/api/metadata/): the release and edition."""

    version: str
    revision: str
    enterprise: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InstanceInfo:
        version = data["version"]
        if not isinstance(version, str) or not re.match(r"^\d+\.\d+\.\d+", version):
            raise UnusableAnswer("its version is not MAJOR.MINOR.PATCH")
        # `enterprise` since 15.6; before it, EE carries the `-ee` suffix.
        enterprise = data.get("enterprise")
        ee = bool(enterprise) if isinstance(enterprise, bool) else version.split("-", 1)[-1].startswith("ee")
        return cls(version=version, revision=str(data.get("revision") or ""), enterprise=ee)

    @property
    def release(self) -> tuple[int, int, int]:
        major, minor, patch = re.match(r"^(\d+)\.(\d+)\.(\d+)", self.version).groups()  # type: ignore[union-attr]
        return int(major), int(minor), int(patch)


@dataclass(frozen=True)
class AccessTokenInfo:
    """`GET /personal_access_tokens/self` (https://docs.gitlab.com/api/personal_access_tokens/): the calling
    token. `expires_at` is a date: GitLab refuses the token from 00:00 UTC of that day."""

    id: int
    name: str
    scopes: tuple[str, ...]
    expires_at: date | None
    active: bool
    user_id: int | None = None
    revoked: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AccessTokenInfo:
        expires = data.get("expires_at")
        user = data.get("user_id")
        return cls(
            id=created_id(data["id"]),
            name=str(data.get("name") or ""),
            scopes=tuple(str(s) for s in data.get("scopes") or ()),
            expires_at=date.fromisoformat(str(expires)[:10]) if expires else None,
            active=bool(data.get("active", True)),
            user_id=user if isinstance(user, int) and not isinstance(user, bool) else None,
            revoked=bool(data.get("revoked", False)),
        )


@dataclass(frozen=True)
class RotatedAccessToken:
    info: AccessTokenInfo
    token: str

    def __repr__(self) -> str:  # keep the token out of any log or traceback that prints this object
        return f"RotatedAccessToken(info={self.info!r}, token=<redacted>)"


# === failures ==================================================================================================

# The request never left (it could not be encoded, TLS could not be set up or verified, its token was being
# rotated): GitLab did nothing.
_NEVER_SENT = frozenset(
    {Reason.ACCESS_TOKEN_MALFORMED, Reason.CA_INVALID, Reason.TLS_VERIFICATION_FAILED, Reason.TOKEN_ROTATING}
)
_BY_STATUS = {
    400: Reason.GITLAB_REJECTED,
    401: Reason.ACCESS_TOKEN_INVALID,
    403: Reason.ACCESS_TOKEN_FORBIDDEN,
    404: Reason.GITLAB_NOT_FOUND,
    429: Reason.GITLAB_RATE_LIMITED,
}


class GitLabError(Exception):
    """A failed call. `retryable` says whether the same call may succeed later by itself (5xx, 429, network);
    `retry_after` is GitLab's Retry-After in seconds when it sent one. The message never holds a token."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool,
        retry_after: float | None = None,
        kind: Reason | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.kind = kind  # a reason of its own, for failures that are not an HTTP status (garbage, TLS, header)

    @property
    def nothing_done(self) -> bool:
        """GitLab certainly did not act on the request: it was never sent, or refused with a 4xx (a 429 too:
        GitLab's rate limits answer before the request is processed). Anything else may hide a request that was
        processed: a 5xx, a timeout or a dropped connection, and as well an answer that cannot be read as GitLab's
        success, since something between the operator and GitLab may have replaced GitLab's answer after GitLab
        acted: a 2xx that is not GitLab's JSON or lacks a usable token (a proxy's page), or a 3xx (GitLab's API
        never redirects, and `303 See Other` is how web front ends answer a POST they have processed)."""
        if self.kind in _NEVER_SENT:
            return True
        return self.status is not None and 400 <= self.status < 500

    @property
    def reason(self) -> Reason:
        """The reason for conditions and Events."""
        if self.kind:
            return self.kind
        if self.status is None:
            return Reason.GITLAB_UNREACHABLE
        default = Reason.GITLAB_UNAVAILABLE if self.status >= 500 else Reason.GITLAB_REJECTED
        return _BY_STATUS.get(self.status, default)


class GitLabThrottled(GitLabError):
    """Not sent: the operator's request budget for this connection, or a pause GitLab asked its host for (429,
    `RateLimit-Remaining: 0`), holds every call back for `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message, retryable=True, retry_after=retry_after)

    @property
    def reason(self) -> Reason:
        return Reason.GITLAB_THROTTLED


@register_classifier
def classify_gitlab_error(exc: BaseException) -> ReconcileError | None:
    """A GitLabError as a ReconcileError (the use cases add hints naming the resource's own fields)."""
    if not isinstance(exc, GitLabError):
        return None
    return ReconcileError(exc.reason, str(exc), delay=exc.retry_after, transient=exc.retryable)


@dataclass(frozen=True)
class BatchedRunner:
    """A runner as a batch read (GraphQL) found it: the fields the drift check compares and its managers."""

    details: RunnerDetails
    managers: tuple[RunnerManager, ...] | None  # None: more than the batch holds (read them one by one)


class BatchReadUnavailable(Exception):
    """GitLab cannot serve this batch read (no GraphQL endpoint, a token without `read_api`, a field the instance
    does not know, an owner the token may not list): the caller reads runner by runner over REST instead."""
