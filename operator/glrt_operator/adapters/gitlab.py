"""The GitLab adapter: every HTTP call the operator makes to GitLab, and the one place that classifies failures.

Endpoints as GitLab documents them: https://docs.gitlab.com/api/runners/ and, for creation,
https://docs.gitlab.com/api/users/#create-a-runner-linked-to-a-user. Tokens travel in headers or bodies only;
no exception, log line or repr made here ever contains one.
"""

from __future__ import annotations

import copy
import hashlib
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from .. import metrics
from ..core.errors import ReconcileError, register_classifier
from .gitlab_budget import BudgetExhausted, HostBudget, Priority

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=20.0, write=20.0, pool=5.0)
TOKEN_PROBE_SYSTEM_ID = "glrt-operator-token-check"
MAX_PAGES = 50  # 5,000 runners at per_page=100: bounds every list walk
# What an HTTP header value may hold (RFC 9110 field-value, visible ASCII): a byte-order mark, a line break or a
# non-ASCII character in the access token would make httpx fail before anything is sent.
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
T = TypeVar("T")
THROTTLED = "GitLabThrottled"


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
        kind: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.kind = kind  # a reason of its own, for failures that are not an HTTP status (garbage, TLS, header)

    @property
    def nothing_done(self) -> bool:
        """GitLab certainly did not act on the request: refused with a 4xx (a 429 too: GitLab's rate limits answer
        before the request is processed), or what answered was not GitLab's API at all. A 5xx, a timeout or a
        dropped connection may hide a request that was processed."""
        if self.kind in ("NotGitLab", "AccessTokenMalformed", "CAInvalid", "TLSVerificationFailed"):
            return True
        return self.status is not None and 400 <= self.status < 500

    @property
    def reason(self) -> str:
        """A CamelCase reason for conditions and Events."""
        if self.kind:
            return self.kind
        if self.status is None:
            return "GitLabUnreachable"
        return {
            400: "GitLabRejected",
            401: "AccessTokenInvalid",
            403: "AccessTokenForbidden",
            404: "GitLabNotFound",
            429: "GitLabRateLimited",
        }.get(self.status, "GitLabUnavailable" if self.status >= 500 else "GitLabRejected")


class GitLabThrottled(GitLabError):
    """Not sent: the operator's request budget for this GitLab host, or a pause GitLab asked for (429,
    `RateLimit-Remaining: 0`), holds every call back for `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message, retryable=True, retry_after=retry_after)

    @property
    def reason(self) -> str:
        return THROTTLED


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


# === deploy token results (https://docs.gitlab.com/api/deploy_tokens/) =====================================
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


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _list(body: Any) -> list[Any]:
    if not isinstance(body, list):
        raise TypeError("expected a JSON array")
    return body


def _error_text(response: httpx.Response) -> str:
    """GitLab's own message (`message` or `error`), shortened; never echoes the request."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(body, Mapping):
        detail = body.get("message") or body.get("error_description") or body.get("error") or body
        return str(detail)[:300]
    return str(body)[:300]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _json(response: httpx.Response, action: str, build: Callable[[Any], T]) -> T:
    """The typed result `build` makes of GitLab's JSON answer. A 2xx that is not JSON (an HTML login page, a
    proxy's page) or JSON of another shape is a GitLabError, never a KeyError or a decode error."""
    try:
        body = response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        raise GitLabError(
            f"{action}: {response.url.scheme}://{response.url.host} answered {response.status_code} with {kind}, "
            "not GitLab's JSON API: spec.gitlab.url must be GitLab's base URL (no /users/sign_in, no proxy page)",
            status=response.status_code,
            retryable=False,
            kind="NotGitLab",
        ) from None
    try:
        return build(body)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        raise GitLabError(
            f"{action}: the answer is JSON but not of the shape GitLab's API documents: spec.gitlab.url must "
            "point at GitLab itself (check the URL and any proxy in front of it)",
            status=response.status_code,
            retryable=False,
            kind="GitLabAnswerInvalid",
        ) from None


def _check(response: httpx.Response, action: str) -> httpx.Response:
    if response.is_success:
        return response
    status = response.status_code
    if 300 <= status < 400:
        # GitLab's API never redirects; a redirect (to a login page, to https) means the URL is not GitLab's API.
        where = httpx.URL(response.headers.get("location", "")).path or "elsewhere"
        raise GitLabError(
            f"{action}: {response.url.host} answered {status}, a redirect to {where[:100]}, not GitLab's API: "
            "spec.gitlab.url must be GitLab's base URL exactly (scheme included)",
            status=status,
            retryable=False,
            kind="NotGitLab",
        )
    retryable = status == 429 or status >= 500 or status == 408
    raise GitLabError(
        f"{action}: GitLab answered {status}: {_error_text(response)}",
        status=status,
        retryable=retryable,
        retry_after=_retry_after(response) if retryable else None,
    )


class GitLabClient:
    """Calls to one GitLab instance with one access token. Cheap to create: it borrows a pooled httpx.Client."""

    def __init__(
        self,
        http: httpx.Client,
        api_url: str,
        access_token: str,
        budget: HostBudget | None = None,
        priority: Priority = Priority.EVENT,
        max_wait: float | None = None,
    ):
        if access_token and not _HEADER_SAFE.fullmatch(access_token):
            raise GitLabError(
                "The access token holds characters an HTTP header cannot carry (a byte-order mark, a space or line "
                "break inside it, or a non-ASCII character)",
                retryable=False,
                kind="AccessTokenMalformed",
            )
        self._http = http
        self._api = api_url.rstrip("/")
        self._headers = {"PRIVATE-TOKEN": access_token}
        # Unlimited when constructed without one (tests); GitLabPool always hands out its host's shared budget.
        self._budget = budget or HostBudget(self._api, per_minute=1_000_000, max_in_flight=1_000_000)
        self._priority = priority
        self._max_wait = max_wait

    def __repr__(self) -> str:
        return f"GitLabClient({self._api!r})"

    def _request(
        self,
        method: str,
        path: str,
        action: str,
        *,
        json: Any = None,
        params: Any = None,
        user_auth: bool = True,
    ) -> httpx.Response:
        # Every request to the host passes its shared budget, and every answer teaches it (429, RateLimit-*).
        queued = time.monotonic()
        try:
            self._budget.admit(self._priority, self._max_wait)
        except BudgetExhausted as exc:
            raise GitLabThrottled(f"{action}: {exc}", exc.retry_after) from None
        finally:
            if (waited := time.monotonic() - queued) >= 0.01:
                metrics.record_rate_limit_wait("budget", waited)
        started = time.monotonic()
        try:
            response = self._http.request(
                method,
                self._api + path,
                json=json,
                params=params,
                headers=self._headers if user_auth else None,
            )
            # Before the slot is released: a caller waiting for it must already see a pause this answer asks for.
            self._budget.observe(response.status_code, response.headers)
        except (httpx.LocalProtocolError, UnicodeError):
            # A header or body that cannot be encoded: nothing was sent, and a retry would fail the same way.
            raise GitLabError(
                f"{action}: the request could not be encoded (a token or value with characters HTTP cannot carry)",
                retryable=False,
                kind="AccessTokenMalformed",
            ) from None
        except httpx.TransportError as exc:
            metrics.observe_gitlab_call(method, path, None, started, user_auth)
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise GitLabError(
                    f"{action}: the TLS certificate of {self._api} is not trusted",
                    retryable=False,
                    kind="TLSVerificationFailed",
                ) from None
            # The type name only: some transport errors carry the request, never worth the risk of leaking it.
            raise GitLabError(
                f"{action}: GitLab at {self._api} is unreachable ({type(exc).__name__})", retryable=True
            ) from None
        finally:
            self._budget.release()
        metrics.observe_gitlab_call(method, path, response, started, user_auth, _retry_after(response))
        return response

    # --- runners (user token) ---------------------------------------------------------------------------------

    def create_runner(self, attributes: Mapping[str, Any]) -> CreatedRunner:
        """`POST /user/runners`. Not idempotent: the caller persists the result at once."""
        data = _check(self._request("POST", "/user/runners", "create runner", json=dict(attributes)), "create runner")
        return _json(
            data,
            "create runner",
            lambda body: CreatedRunner(
                id=int(body["id"]),
                token=IssuedToken(token=str(body["token"]), expires_at=parse_time(body.get("token_expires_at"))),
            ),
        )

    def get_runner(self, runner_id: int) -> RunnerDetails | None:
        """`GET /runners/:id`; None when GitLab has no such runner."""
        response = self._request("GET", f"/runners/{runner_id}", "read runner", params={"include_projects": "false"})
        if response.status_code == 404:
            return None
        return _json(_check(response, f"read runner {runner_id}"), f"read runner {runner_id}", RunnerDetails.from_json)

    def update_runner(self, runner_id: int, attributes: Mapping[str, Any]) -> RunnerDetails:
        """`PUT /runners/:id`."""
        action = f"update runner {runner_id}"
        response = self._request("PUT", f"/runners/{runner_id}", action, json=dict(attributes))
        return _json(_check(response, action), action, RunnerDetails.from_json)

    def delete_runner(self, runner_id: int) -> bool:
        """`DELETE /runners/:id`. False when it was already gone (404 counts as done)."""
        response = self._request("DELETE", f"/runners/{runner_id}", f"delete runner {runner_id}")
        if response.status_code == 404:
            return False
        _check(response, f"delete runner {runner_id}")
        return True

    def reset_token(self, runner_id: int) -> IssuedToken:
        """`POST /runners/:id/reset_authentication_token`: works even when the token has expired."""
        action = f"reset token of runner {runner_id}"
        response = self._request("POST", f"/runners/{runner_id}/reset_authentication_token", action)
        return _json(
            _check(response, action),
            action,
            lambda body: IssuedToken(token=str(body["token"]), expires_at=parse_time(body.get("token_expires_at"))),
        )

    def list_managers(self, runner_id: int) -> list[RunnerManager]:
        """`GET /runners/:id/managers` (not paginated)."""
        action = f"list managers of runner {runner_id}"
        response = _check(self._request("GET", f"/runners/{runner_id}/managers", action), action)
        return _json(
            response,
            action,
            lambda body: [
                RunnerManager(
                    id=int(m["id"]),
                    system_id=str(m["system_id"]),
                    status=m.get("status"),
                    contacted_at=m.get("contacted_at"),
                    version=m.get("version"),
                )
                for m in _list(body)
            ],
        )

    def list_runners(self, path: str, **filters: str) -> Iterator[RunnerSummary]:
        """Walk a runner list (`/runners/all`, `/groups/:id/runners`, `/projects/:id/runners`)."""
        page = "1"
        for _ in range(MAX_PAGES):
            params = {**filters, "per_page": "100", "page": page}
            response = _check(self._request("GET", path, "list runners", params=params), "list runners")
            yield from _json(
                response,
                "list runners",
                lambda body: [
                    RunnerSummary(
                        id=int(item["id"]),
                        description=str(item.get("description") or ""),
                        status=item.get("status"),
                        created_at=item.get("created_at"),
                    )
                    for item in _list(body)
                ],
            )
            page = response.headers.get("x-next-page", "")
            if not page:
                return

    # --- runner-authenticated calls (the runner token in the body, no access token) -------------------------

    def delete_manager(self, runner_token: str, system_id: str) -> bool:
        """`DELETE /runners/managers`. False when GitLab had no such manager."""
        response = self._request(
            "DELETE",
            "/runners/managers",
            f"delete runner manager {system_id}",
            json={"token": runner_token, "system_id": system_id},
            user_auth=False,
        )
        if response.status_code == 404:
            return False
        _check(response, f"delete runner manager {system_id}")
        return True

    def delete_runner_by_token(self, runner_token: str) -> bool:
        """`DELETE /runners` with the runner's own token: the whole runner goes. GitLab answers 403
        for a token it does not know, which for a runner already deleted means done: returns False then."""
        response = self._request(
            "DELETE", "/runners", "delete runner by token", json={"token": runner_token}, user_auth=False
        )
        if response.status_code == 403:
            return False
        _check(response, "delete runner by token")
        return True

    def token_is_valid(self, runner_token: str) -> bool:
        """Does GitLab accept this runner token? Asked without side effects: `DELETE /runners/managers` for a
        system_id no runner sends (gitlab-runner only sends `[sr]_` ids) authenticates the token first (403 when
        refused) and then finds no manager (404), so nothing is deleted. `POST /runners/verify` would instead
        create a `<legacy>` runner manager."""
        response = self._request(
            "DELETE",
            "/runners/managers",
            "check runner token",
            json={"token": runner_token, "system_id": TOKEN_PROBE_SYSTEM_ID},
            user_auth=False,
        )
        if response.status_code == 403:
            return False
        if response.status_code == 404:
            return True
        _check(response, "check runner token")
        return True

    # === deploy tokens (https://docs.gitlab.com/api/deploy_tokens/) ==========================================
    # One block, so it can move as a whole with the package split. `scope_path` is `projects/<id>` or
    # `groups/<id>`: a project needs a Maintainer's token; a group needs Maintainer to read and Owner to create
    # or revoke; the access token needs scope `api`.

    def create_deploy_token(
        self, scope_path: str, *, name: str, scopes: Sequence[str], expires_on: date | None, username: str | None
    ) -> CreatedDeployToken:
        """`POST /<scope_path>/deploy_tokens`. Not idempotent, and the only reply holding the token: the caller
        stores it at once. GitLab expires it at 00:00 UTC of `expires_on`."""
        body: dict[str, Any] = {"name": name, "scopes": list(scopes)}
        if expires_on is not None:
            body["expires_at"] = f"{expires_on.isoformat()}T00:00:00Z"
        if username:
            body["username"] = username
        action = f"create deploy token in {scope_path}"
        data = _check(self._request("POST", f"/{scope_path}/deploy_tokens", action, json=body), action).json()
        return CreatedDeployToken(info=DeployTokenInfo.from_json(data), token=str(data["token"]))

    def list_deploy_tokens(self, scope_path: str) -> list[DeployTokenInfo]:
        """`GET /<scope_path>/deploy_tokens`, every page, revoked and expired tokens included."""
        action = f"list deploy tokens of {scope_path}"
        tokens: list[DeployTokenInfo] = []
        page = "1"
        for _ in range(MAX_PAGES):
            params = {"per_page": "100", "page": page}
            response = _check(self._request("GET", f"/{scope_path}/deploy_tokens", action, params=params), action)
            tokens += [DeployTokenInfo.from_json(item) for item in response.json()]
            page = response.headers.get("x-next-page", "")
            if not page:
                break
        return tokens

    def get_deploy_token(self, scope_path: str, token_id: int) -> DeployTokenInfo | None:
        """`GET /<scope_path>/deploy_tokens/:id`; None when GitLab has no such token."""
        action = f"read deploy token {token_id} of {scope_path}"
        response = self._request("GET", f"/{scope_path}/deploy_tokens/{token_id}", action)
        if response.status_code == 404:
            return None
        return DeployTokenInfo.from_json(_check(response, action).json())

    def revoke_deploy_token(self, scope_path: str, token_id: int) -> bool:
        """`DELETE /<scope_path>/deploy_tokens/:id` revokes the token. False when it was already gone (404)."""
        action = f"revoke deploy token {token_id} of {scope_path}"
        response = self._request("DELETE", f"/{scope_path}/deploy_tokens/{token_id}", action)
        if response.status_code == 404:
            return False
        _check(response, action)
        return True

    # === end of deploy tokens ================================================================================


class GitLabPool:
    """One pooled httpx.Client per CA bundle and one request budget per GitLab host, shared by every Runner;
    created at startup, closed at cleanup. `for_resyncs()` is a view of the same pool whose calls are periodic
    resyncs: they yield to event-driven calls and give up after `resync_max_wait` instead of queueing."""

    def __init__(
        self,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        *,
        per_minute: int = 600,
        max_in_flight: int = 8,
        event_max_wait: float = 10.0,
        resync_max_wait: float = 1.0,
    ):
        self._timeout = timeout
        self._transport = transport
        self._clients: dict[str, httpx.Client] = {}
        self._budgets: dict[str, HostBudget] = {}
        self._lock = threading.Lock()
        self._per_minute = per_minute
        self._max_in_flight = max_in_flight
        self._event_max_wait = event_max_wait
        self._resync_max_wait = resync_max_wait
        self.priority = Priority.EVENT

    def for_resyncs(self) -> GitLabPool:
        view = copy.copy(self)  # shares the clients, budgets and lock
        view.priority = Priority.RESYNC
        return view

    def budget(self, api_url: str) -> HostBudget:
        """The one budget of this URL's host (host and port), created on first use."""
        host = urlsplit(api_url).netloc.lower()
        with self._lock:
            budget = self._budgets.get(host)
            if budget is None:
                budget = HostBudget(
                    host, per_minute=self._per_minute, max_in_flight=self._max_in_flight, max_wait=self._event_max_wait
                )
                self._budgets[host] = budget
            return budget

    def client(self, api_url: str, access_token: str, ca_pem: str | None = None) -> GitLabClient:
        key = hashlib.sha256(ca_pem.encode()).hexdigest() if ca_pem else ""
        http = self._clients.get(key)
        if http is None:
            verify: ssl.SSLContext | bool = _ssl_context(ca_pem) if ca_pem else True
            http = httpx.Client(
                timeout=self._timeout,
                verify=verify,
                transport=self._transport,
                headers={"User-Agent": "glrt-operator"},
                limits=httpx.Limits(max_connections=max(20, self._max_in_flight), max_keepalive_connections=10),
            )
            self._clients[key] = http
        resync = self.priority is Priority.RESYNC
        return GitLabClient(
            http,
            api_url,
            access_token,
            budget=self.budget(api_url),
            priority=self.priority,
            max_wait=self._resync_max_wait if resync else self._event_max_wait,
        )

    def close(self) -> None:
        for http in self._clients.values():
            http.close()
        self._clients.clear()


def _ssl_context(ca_pem: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cadata=ca_pem)
    except (ssl.SSLError, ValueError, UnicodeError):
        raise GitLabError(
            "The CA bundle is not PEM (expected one or more -----BEGIN CERTIFICATE----- blocks)",
            retryable=False,
            kind="CAInvalid",
        ) from None


@register_classifier
def classify_gitlab_error(exc: BaseException) -> ReconcileError | None:
    """A GitLabError as a ReconcileError (the use cases add hints naming the Runner's own fields)."""
    if not isinstance(exc, GitLabError):
        return None
    return ReconcileError(exc.reason, str(exc), delay=exc.retry_after, transient=exc.retryable)
