"""One GitLab instance, one access token: every HTTP call passes the connection's request budget and every answer is
checked for GitLab's status and shape in one place. Tokens travel in headers or bodies only; no exception, log line
or repr made here ever contains one."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import httpx

from ... import metrics
from ...core.gitlab import GitLabError, GitLabThrottled, UnusableAnswer
from ...core.reasons import Reason
from .budget import BudgetExhausted, ConnectionBudget, Priority
from .credentials import Credential

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=20.0, write=20.0, pool=5.0)
MAX_PAGES = 50  # 5,000 items at per_page=100: bounds every list walk
# What an HTTP header value may hold (RFC 9110 field-value, visible ASCII): a byte-order mark, a line break or a
# non-ASCII character in the access token would make httpx fail before anything is sent.
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
T = TypeVar("T")


def json_list(body: Any) -> list[Any]:
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


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def parse_answer(response: httpx.Response, action: str, build: Callable[[Any], T]) -> T:
    """The typed result `build` makes of GitLab's JSON answer. A 2xx that is not JSON (an HTML login page, a
    proxy's page) or JSON of another shape is a GitLabError, never a KeyError or a decode error. It keeps the
    status: to a call that is not idempotent such an answer leaves the outcome unknown (`GitLabError.nothing_done`),
    since a proxy may have replaced GitLab's answer after GitLab acted."""
    try:
        body = response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        raise GitLabError(
            f"{action}: {response.url.scheme}://{response.url.host} answered {response.status_code} with {kind}, "
            "not GitLab's JSON API: spec.gitlab.url must be GitLab's base URL (no /users/sign_in, no proxy page)",
            status=response.status_code,
            retryable=False,
            kind=Reason.NOT_GITLAB,
        ) from None
    try:
        return build(body)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        what = f" ({exc})" if isinstance(exc, UnusableAnswer) else ""
        raise GitLabError(
            f"{action}: the answer is JSON but not of the shape GitLab's API documents{what}: spec.gitlab.url must "
            "point at GitLab itself (check the URL and any proxy in front of it)",
            status=response.status_code,
            retryable=False,
            kind=Reason.GITLAB_ANSWER_INVALID,
        ) from None


def check_status(response: httpx.Response, action: str) -> httpx.Response:
    """The response when GitLab answered 2xx; a GitLabError saying what went wrong otherwise."""
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
            kind=Reason.NOT_GITLAB,
        )
    retryable = status == 429 or status >= 500 or status == 408
    raise GitLabError(
        f"{action}: GitLab answered {status}: {_error_text(response)}",
        status=status,
        retryable=retryable,
        retry_after=retry_after(response) if retryable else None,
    )


def answer(response: httpx.Response, action: str, build: Callable[[Any], T]) -> T:
    """`build`'s result of a 2xx answer of GitLab's shape; a GitLabError for anything else."""
    return parse_answer(check_status(response, action), action, build)


class Session:
    """Calls to one GitLab instance with one access token. Cheap to create: it borrows a pooled httpx.Client and
    its connection's budget (see GitLabPool). The token is the credential's at the time of each call (see
    credentials.py): a client made before a rotation of its token sends with the successor after it."""

    def __init__(
        self,
        http: httpx.Client,
        api_url: str,
        access_token: str,
        budget: ConnectionBudget,
        priority: Priority = Priority.EVENT,
        max_wait: float | None = None,
        credential: Credential | None = None,
    ):
        if access_token and not _HEADER_SAFE.fullmatch(access_token):
            raise GitLabError(
                "The access token holds characters an HTTP header cannot carry (a byte-order mark, a space or line "
                "break inside it, or a non-ASCII character)",
                retryable=False,
                kind=Reason.ACCESS_TOKEN_MALFORMED,
            )
        self._http = http
        self._api = api_url.rstrip("/")
        self._credential = credential if access_token else None
        self._access_token = access_token
        self._budget = budget
        self._priority = priority
        self._max_wait = max_wait

    @property
    def graphql_url(self) -> str:
        """GitLab's GraphQL endpoint, `/api/graphql` beside `/api/v4`."""
        return re.sub(r"/api/v4$", "", self._api) + "/api/graphql"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._api!r})"

    def _request(
        self,
        method: str,
        path: str,
        action: str,
        *,
        json: Any = None,
        params: Any = None,
        user_auth: bool = True,
        url: str | None = None,
        settles_doubt: bool = False,
    ) -> httpx.Response:
        """One HTTP call with the access token its credential holds now (shared, for this call only)."""
        if not user_auth:
            return self._send(method, path, action, None, json=json, params=params, url=url)
        if self._credential is None:
            return self._send(method, path, action, self._access_token, json=json, params=params, url=url)
        with self._credential.sending(action, settles_doubt=settles_doubt) as token:
            return self._send(method, path, action, token, json=json, params=params, url=url)

    def _send(
        self,
        method: str,
        path: str,
        action: str,
        token: str | None,
        *,
        json: Any = None,
        params: Any = None,
        url: str | None = None,
    ) -> httpx.Response:
        """One HTTP call: admitted by the connection's budget (which learns from every answer: 429, RateLimit-*, and
        pauses the whole host), timed and counted for the metrics and for the resync pacing of this budget;
        transport failures as GitLabErrors. `token` None: no PRIVATE-TOKEN header."""
        user_auth = token is not None
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
                url or self._api + path,
                json=json,
                params=params,
                headers={"PRIVATE-TOKEN": token} if token is not None else None,
            )
            # Before the slot is released: a caller waiting for it must already see a pause this answer asks for.
            self._budget.observe(response.status_code, response.headers)
        except (httpx.LocalProtocolError, UnicodeError):
            # A header or body that cannot be encoded: nothing was sent, and a retry would fail the same way.
            raise GitLabError(
                f"{action}: the request could not be encoded (a token or value with characters HTTP cannot carry)",
                retryable=False,
                kind=Reason.ACCESS_TOKEN_MALFORMED,
            ) from None
        except httpx.TransportError as exc:
            metrics.observe_gitlab_call(method, path, None, started, user_auth, budget=self._budget)
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise GitLabError(
                    f"{action}: the TLS certificate of {self._api} is not trusted",
                    retryable=False,
                    kind=Reason.TLS_VERIFICATION_FAILED,
                ) from None
            # The type name only: some transport errors carry the request, never worth the risk of leaking it.
            raise GitLabError(
                f"{action}: GitLab at {self._api} is unreachable ({type(exc).__name__})", retryable=True
            ) from None
        finally:
            self._budget.release()
        metrics.observe_gitlab_call(method, path, response, started, user_auth, retry_after(response), self._budget)
        return response

    def _call(self, method: str, path: str, action: str, build: Callable[[Any], T], **options: Any) -> T:
        """A call whose 2xx answer must be GitLab's JSON of the shape `build` reads."""
        return answer(self._request(method, path, action, **options), action, build)

    def _pages(
        self, path: str, action: str, build: Callable[[Any], T], params: Mapping[str, str] | None = None
    ) -> Iterator[T]:
        """Every item of a paginated list (`per_page=100`, GitLab's `x-next-page`), at most MAX_PAGES pages."""
        page = "1"
        for _ in range(MAX_PAGES):
            query = {**(params or {}), "per_page": "100", "page": page}
            response = check_status(self._request("GET", path, action, params=query), action)
            yield from parse_answer(response, action, lambda body: [build(item) for item in json_list(body)])
            page = response.headers.get("x-next-page", "")
            if not page:
                return
