"""The GitLab connections of the whole operator: one pooled httpx.Client per CA bundle, one request budget per
connection (token family) and one pause per GitLab host, shared by every resource; created at startup, closed at
cleanup."""

from __future__ import annotations

import copy
import hashlib
import ssl
import threading
from urllib.parse import urlsplit

import httpx

from ...core.gitlab import GitLabError
from ...core.reasons import Reason
from .budget import ConnectionBudget, HostPause, Priority
from .client import GitLabClient
from .credentials import Credential, CredentialRegistry
from .session import DEFAULT_TIMEOUT


class GitLabPool:
    """Hands out GitLabClients, each sending the current token of its token family (a rotation in this process
    moves every client of the family to the successor at once). `for_resyncs()` is a view of the same pool whose
    calls are periodic resyncs: they yield to event-driven calls and give up after `resync_max_wait` instead of
    queueing."""

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
        # One budget per token family (its Credential: a rotated token keeps its family's budget); calls without an
        # access token (a runner token in the body) share one per host, as GitLab counts them per IP.
        self._budgets: dict[Credential | str, ConnectionBudget] = {}
        self._pauses: dict[str, HostPause] = {}
        self._credentials = CredentialRegistry()  # one holder per token family: see credentials.py
        self._lock = threading.Lock()
        self._per_minute = per_minute
        self._max_in_flight = max_in_flight
        self._event_max_wait = event_max_wait
        self._resync_max_wait = resync_max_wait
        self.priority = Priority.EVENT

    def for_resyncs(self) -> GitLabPool:
        view = copy.copy(self)  # shares the clients, budgets, pauses and lock
        view.priority = Priority.RESYNC
        return view

    def pause(self, api_url: str) -> HostPause:
        """The pause GitLab asked this URL's host (host and port) for, shared by every connection to it."""
        host = urlsplit(api_url).netloc.lower()
        with self._lock:
            return self._pause(host)

    def budget(self, api_url: str, access_token: str = "") -> ConnectionBudget:
        """The budget of this connection (the token family of `access_token` on `api_url`; without a token, the
        host's calls without one), created on first use."""
        return self._budget(api_url, self._credentials.get(api_url, access_token) if access_token else None)

    def _pause(self, host: str) -> HostPause:  # under the lock
        pause = self._pauses.get(host)
        if pause is None:
            pause = self._pauses[host] = HostPause(host)
        return pause

    def _budget(self, api_url: str, credential: Credential | None) -> ConnectionBudget:
        host = urlsplit(api_url).netloc.lower()
        key: Credential | str = credential if credential is not None else host
        with self._lock:
            budget = self._budgets.get(key)
            if budget is None:
                budget = self._budgets[key] = ConnectionBudget(
                    host,
                    per_minute=self._per_minute,
                    max_in_flight=self._max_in_flight,
                    max_wait=self._event_max_wait,
                    pause=self._pause(host),
                )
            return budget

    def client(self, api_url: str, access_token: str, ca_pem: str | None = None) -> GitLabClient:
        resync = self.priority is Priority.RESYNC
        credential = self._credentials.get(api_url, access_token) if access_token else None
        return GitLabClient(
            self._http(ca_pem),
            api_url,
            access_token,
            budget=self._budget(api_url, credential),
            priority=self.priority,
            max_wait=self._resync_max_wait if resync else self._event_max_wait,
            credential=credential,
        )

    def _http(self, ca_pem: str | None) -> httpx.Client:
        """The pooled client verifying with `ca_pem` (or the system's CAs), created once under the lock: two
        resources asking at once never build two pools of connections."""
        key = hashlib.sha256(ca_pem.encode()).hexdigest() if ca_pem else ""
        with self._lock:
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
            return http

    def close(self) -> None:
        with self._lock:
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
            kind=Reason.CA_INVALID,
        ) from None
