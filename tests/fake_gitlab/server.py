"""HTTP layer of the fake GitLab and the :class:`FakeGitLab` facade.

A ``ThreadingHTTPServer`` (HTTP/1.1, keep-alive) in a background thread. ``/api/v4/...`` goes to :mod:`.api`
under one state lock, after fault injection (:mod:`.faults`), and so do ``/api/graphql`` (:mod:`.graphql_api`) and
the registry's ``/jwt/auth``; ``/-/fake/...`` goes to :mod:`.control`.
Request bodies are JSON, urlencoded or multipart form data, merged with the query
(REST API). Nothing here ever logs or prints a token.
"""

from __future__ import annotations

import copy
import http
import json
import re
import select
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import date, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from . import access_tokens, api, control, deploy_tokens, graphql_api, registry_auth
from . import metadata as _metadata  # noqa: F401 -- its routes register on import
from .deploy_tokens import DeployToken
from .faults import APP_RATE_LIMIT_MESSAGE, Fault, FaultSet
from .state import (
    AccessToken,
    Call,
    Clock,
    Group,
    Project,
    Runner,
    Settings,
    State,
    User,
    iso,
    mask_token,
)

API_PREFIX = "/api/v4"
REGISTRY_AUTH_PATH = "/jwt/auth"
# Served outside /api/v4 but through the same faults, call log and state lock (graphql_api registers /api/graphql).
OUTSIDE_API_PATHS = frozenset({REGISTRY_AUTH_PATH, graphql_api.GRAPHQL_PATH})
CONTROL_PREFIX = "/-/fake"
FILTERED = "[FILTERED]"
# Body parameters whose values are safe to keep in the call log (everything else: names only).
SAFE_PARAMS = (
    "runner_type",
    "group_id",
    "project_id",
    "system_id",
    "description",
    "paused",
    "active",
    "locked",
    "run_untagged",
    "tag_list",
    "access_level",
    "maximum_timeout",
    "expires_at",
    "operationName",  # GraphQL
)


# ------------------------------------------------------------------------ body parsing
def _assign(container: dict[str, Any], name: str, parts: list[str], value: Any) -> None:
    """Rack nested params: ``a[b]=1`` → ``{"a": {"b": "1"}}``, ``a[]=1&a[]=2`` → ``{"a": ["1", "2"]}``."""
    if not parts:
        container[name] = value
        return
    head, tail = parts[0], parts[1:]
    if head == "":
        current = container.get(name)
        if not isinstance(current, list):
            current = []
            container[name] = current
        current.append(value)
        return
    sub = container.get(name)
    if not isinstance(sub, dict):
        sub = {}
        container[name] = sub
    _assign(sub, head, tail, value)


def parse_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        match = re.fullmatch(r"([^\[\]]+)((?:\[[^\[\]]*\])*)", key)
        if match is None:
            out[key] = value
            continue
        _assign(out, match[1], re.findall(r"\[([^\[\]]*)\]", match[2]), value)
    return out


def parse_body(content_type: str, raw: bytes, *, allow_array: bool = False) -> dict[str, Any]:
    """JSON or urlencoded body → params (multipart, used by no client here, is ignored); ``ValueError`` if malformed.

    With ``allow_array`` a JSON array becomes ``{"_json": [...]}``, as Rails wraps it (a GraphQL multiplex).
    """
    if not raw:
        return {}
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        return parse_pairs(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    if media in ("application/json", "") or media.endswith("+json"):
        try:
            data = json.loads(raw)
        except ValueError:
            if media:
                raise
            return parse_pairs(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
        if allow_array and isinstance(data, list):
            return {"_json": data}
        if not isinstance(data, dict):
            raise ValueError("the JSON body must be an object")
        return data
    return {}


def redact(value: Any, key: str = "") -> Any:
    """Replace the value of every ``*token*`` key (recursively) for the call log."""
    if "token" in key.lower():
        return FILTERED
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


# ------------------------------------------------------------------------ HTTP server
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], fake: FakeGitLab) -> None:
        self.fake = fake
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._connections.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._connections.discard(conn)

    def close_connections(self) -> None:
        """Wake handler threads parked on keep-alive connections so ``stop()`` leaves nothing behind."""
        with self._conn_lock:
            conns = list(self._connections)
        for conn in conns:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return  # the client went away
        # Type and frames only: an exception message could quote a request value.
        sys.stderr.write(f"fake GitLab: unexpected {type(exc).__name__}\n")
        sys.stderr.write("".join(traceback.format_tb(exc.__traceback__ if exc else None)))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-gitlab"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes; without NODELAY, Nagle plus delayed ACKs add ~40 ms.
        with suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the default line quotes the raw request line, query string (and so tokens) included."""

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header tells the fake's clock, as GitLab's tells its own (moved clocks included)."""
        return super().date_time_string(self.server.fake.clock.now().timestamp() if timestamp is None else timestamp)

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_GET
    do_POST = do_GET
    do_PUT = do_GET
    do_DELETE = do_GET
    do_PATCH = do_GET

    # -------------------------------------------------------------------- plumbing
    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, resp: api.Response) -> None:
        if resp.text is not None:
            body = resp.text.encode("utf-8")
            content_type: str | None = resp.content_type
        elif resp.status == 204 or (resp.body is None and resp.status < 300):
            body, content_type = b"", None
        else:
            body = json.dumps(resp.body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            content_type = resp.content_type
        try:
            self.send_response(resp.status)
            if content_type is not None:
                self.send_header("Content-Type", content_type)
            for name, value in resp.headers.items():
                self.send_header(name, value)
            if resp.status != 204:
                self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Request-Id", f"{time.time_ns():x}")
            self.end_headers()
            if self.command != "HEAD" and resp.status != 204:
                self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _drop(self) -> None:
        """Close the connection without a byte of response."""
        self.close_connection = True
        with suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _client_gone(self) -> bool:
        """The client closed its end (a killed process): the socket reads as end of file."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _hold_while_connected(self, seconds: float) -> bool:
        """Wait `seconds` (or until the fake stops); False as soon as the client is gone."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.server.fake._stopping.is_set():
            if self._client_gone():
                return False
            time.sleep(0.02)
        return not self._client_gone()

    # -------------------------------------------------------------------- one request
    def _serve(self) -> None:
        fake = self.server.fake
        started = time.monotonic()
        raw = self._read_body()
        split = urlsplit(self.path)
        path = split.path
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            self._send(control.handle(fake, self.command, path, split.query, raw))
            return
        # The registry's token endpoint lives outside /api/v4; it goes through the same faults and call log.
        if not path.startswith(API_PREFIX + "/") and path not in OUTSIDE_API_PATHS:
            self._send(api.Response(404, {"error": "404 Not Found"}))
            return
        fake_time = fake.clock.now()
        query_pairs = parse_qsl(split.query, keep_blank_values=True)
        host = self.headers.get("Host") or fake.url.removeprefix("http://")
        req = api.Request(
            method=self.command,
            path=path if path in OUTSIDE_API_PATHS else path[len(API_PREFIX) :],
            query=parse_pairs(list(query_pairs)),
            body={},
            headers={k.lower(): v for k, v in self.headers.items()},
            client_ip=self.client_address[0],
            base_url=f"http://{host}",
            query_pairs=query_pairs,
            raw=raw,
        )
        try:
            req.body = parse_body(self.headers.get("Content-Type", ""), raw, allow_array=path in OUTSIDE_API_PATHS)
        except (ValueError, UnicodeDecodeError):
            resp = api.Response(400, {"error": "The request body could not be parsed"})
            fake._record(req, path, resp.status, api.CallInfo(), None, fake_time, started)
            self._send(resp)
            return

        fault = fake.faults.match(self.command, path)
        kind = fault.kind if fault else None
        if fault is not None and kind == "latency":
            fake._wait(fault.seconds)
        if fault is not None and kind == "hold_before_commit" and not self._hold_while_connected(fault.seconds):
            fake._record(req, path, 0, api.CallInfo(), kind, fake_time, started)  # GitLab did nothing
            self._drop()
            return
        if fault is not None and kind in ("status", "rate_limit_rack", "rate_limit_app", "drop"):
            if kind == "drop":
                fake._record(req, path, 0, api.CallInfo(), kind, fake_time, started)
                self._drop()
                return
            resp = _fault_response(fault)
            fake._record(req, path, resp.status, api.CallInfo(), kind, fake_time, started)
            self._send(resp)
            return

        resp, info = fake._handle(req)
        if kind == "drop_after_commit":
            fake._record(req, path, resp.status, info, kind, fake_time, started)
            self._drop()
            return
        if fault is not None and kind == "hold_after_commit":
            fake._wait(fault.seconds)
        fake._record(req, path, resp.status, info, kind, fake_time, started)  # what GitLab did, not what it said
        if fault is not None and kind == "garble_after_commit" and 200 <= resp.status < 300:
            resp = _garbled(resp, fault.garble)
        if fake.verbose:
            sys.stderr.write(f"fake GitLab: {self.command} {path} -> {resp.status}\n")
        self._send(resp)


def _garbled(resp: api.Response, garble: str) -> api.Response:
    """What a proxy or a broken GitLab answers instead of `resp`, the request already processed."""
    if garble == "html":
        return api.Response(
            200, text="<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", content_type="text/html"
        )
    if garble == "empty":
        return api.Response(200, text="", content_type="application/json")
    if garble == "text":
        return api.Response(200, text="OK\n", content_type="text/plain")
    if garble == "see-other":
        return api.Response(303, text="", content_type="text/html", headers={"Location": "/dashboard"})
    body = dict(resp.body) if isinstance(resp.body, dict) else {}
    replacement = {"token-null": None, "token-empty": "", "token-number": 1234567, "token-shape": "ok-0123456789abcdef"}
    if garble == "no-token":
        body.pop("token", None)
    else:
        body["token"] = replacement[garble]
    return api.Response(resp.status, body, dict(resp.headers))


def _fault_response(fault: Fault) -> api.Response:
    """The response of a short-circuit fault (REST status codes, rate limits)."""
    if fault.kind == "rate_limit_rack":
        reset = int(time.time()) + fault.retry_after_seconds  # real time: clients compare it with their own clock
        return api.Response(
            429,
            text=fault.message if fault.message is not None else "Retry later\n",
            content_type="text/plain",
            headers={
                "RateLimit-Name": "throttle_authenticated_api",
                "RateLimit-Limit": "60",
                "RateLimit-Observed": "61",
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(reset),
                "RateLimit-ResetTime": formatdate(reset, usegmt=True),
                "Retry-After": str(fault.retry_after_seconds),
            },
        )
    if fault.kind == "rate_limit_app":
        return api.Response(
            429,
            {"message": fault.message or APP_RATE_LIMIT_MESSAGE},
            headers={"Retry-After": str(fault.retry_after_seconds)},
        )
    try:
        phrase = http.HTTPStatus(fault.status).phrase
    except ValueError:
        phrase = "Error"
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    return api.Response(fault.status, {"message": fault.message or f"{fault.status} {phrase}"}, headers)


# ------------------------------------------------------------------------ the facade
class FakeGitLab(access_tokens.AccessTokensFacade):
    """A stateful fake GitLab: setup helpers, state snapshots, fault injection and an HTTP server.

    ``FakeGitLab()`` starts empty with a real clock; ``start()`` serves it on a background thread. State reads
    return copies taken under the lock; mutate through the methods here.
    """

    def __init__(self, *, clock: Clock | None = None, verbose: bool = False) -> None:
        self.clock = clock or Clock()
        self.verbose = verbose
        self.faults = FaultSet()
        self._state = State(self.clock)
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # "METHOD path: ExceptionType" for every request the fake itself failed on (should stay empty)
        self.internal_errors: list[str] = []

    # ---------------------------------------------------------------- lifecycle
    def start(self, host: str = "127.0.0.1", port: int = 0) -> Self:
        """Serve on ``host:port`` (0 = a free port) from a daemon thread; returns ``self``."""
        if self._server is not None:
            raise RuntimeError("the fake GitLab is already running")
        self._stopping.clear()
        server = _Server((host, port), self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="fake-gitlab", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and the socket, join the thread. Idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        # shutdown() waits for serve_forever() to notice, which sleeps in select() up to poll_interval;
        # a throwaway connection wakes it at once.
        stopper = threading.Thread(target=server.shutdown, name="fake-gitlab-stop", daemon=True)
        stopper.start()
        host = self.url.removeprefix("http://").rsplit(":", 1)[0].strip("[]")
        while stopper.is_alive():
            with suppress(OSError), socket.create_connection((host, self.port), timeout=0.2):
                pass
            stopper.join(0.02)
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    @contextmanager
    def running(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[Self]:
        self.start(host, port)
        try:
            yield self
        finally:
            self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fake GitLab is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port`` (the API is at ``url + "/api/v4"``)."""
        if self._server is None:
            raise RuntimeError("the fake GitLab is not running")
        host = str(self._server.server_address[0])
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + API_PREFIX

    # ---------------------------------------------------------------- setup
    def add_user(self, username: str, admin: bool = False, *, name: str | None = None) -> User:
        with self._lock:
            return self._state.add_user(username, admin=admin, name=name)

    def add_group(
        self,
        group_id: int,
        path: str,
        owners: list[User] | None = None,
        maintainers: list[User] | None = None,
        parent_id: int | None = None,
        *,
        developers: list[User] | None = None,
        name: str | None = None,
    ) -> Group:
        """Add a group; returns the live object (set its runner token expiry interval fields freely)."""
        with self._lock:
            return self._state.add_group(
                group_id,
                path,
                owners=owners,
                maintainers=maintainers,
                developers=developers,
                parent_id=parent_id,
                name=name,
            )

    def add_project(
        self,
        project_id: int,
        path: str,
        group_id: int | None = None,
        owners: list[User] | None = None,
        maintainers: list[User] | None = None,
        developers: list[User] | None = None,
        *,
        name: str | None = None,
    ) -> Project:
        """Add a project; returns the live object (``runner_token_expiration_interval`` is settable)."""
        with self._lock:
            return self._state.add_project(
                project_id,
                path,
                group_id=group_id,
                owners=owners,
                maintainers=maintainers,
                developers=developers,
                name=name,
            )

    def add_project_member(self, project_id: int, user: User, role: str = "maintainer") -> None:
        """Give ``user`` a role (owner, maintainer or developer) on an existing project."""
        if role not in ("owner", "maintainer", "developer"):
            raise ValueError(f"unknown role {role!r}")
        with self._lock:
            getattr(self._state.projects[project_id], f"{role}s").add(user.id)

    def add_access_token(
        self,
        token: str,
        user: User,
        scopes: list[str] | None = None,
        expires_at: datetime | date | None = None,
        revoked: bool = False,
        *,
        name: str | None = None,
        description: str | None = None,
        kind: str = "personal",
    ) -> AccessToken:
        """Register a user token (default scopes ``create_runner``, ``manage_runner``); returns the live object.

        ``expires_at`` is a date (a datetime is cut to its UTC date): the token dies at 00:00 UTC of it.
        ``kind="oauth"`` makes an OAuth token, accepted only as ``Authorization: Bearer``."""
        with self._lock:
            return self._state.add_access_token(
                token,
                user,
                scopes=scopes,
                expires_at=expires_at,
                revoked=revoked,
                name=name,
                description=description,
                kind=kind,
            )

    @property
    def settings(self) -> Settings:
        """Live instance settings (runner token expiry); applied at runner creation and at every reset."""
        return self._state.settings

    # ---------------------------------------------------------------- reading state
    @property
    def runners(self) -> dict[int, Runner]:
        """A deep copy of every runner, by id."""
        with self._lock:
            return {runner_id: runner.snapshot() for runner_id, runner in self._state.runners.items()}

    def runner(self, runner_id: int) -> Runner | None:
        with self._lock:
            runner = self._state.runners.get(runner_id)
            return runner.snapshot() if runner else None

    def runner_ids(self) -> list[int]:
        with self._lock:
            return sorted(self._state.runners)

    def runner_by_token(self, token: str) -> Runner | None:
        """The runner currently holding ``token`` (expired or not), or ``None``."""
        with self._lock:
            runner = self._state.runner_for_token(token)
            return runner.snapshot() if runner else None

    @property
    def revoked_tokens(self) -> set[str]:
        """Every runner token replaced by a reset or deleted with its runner."""
        with self._lock:
            return set(self._state.revoked_tokens)

    @property
    def calls(self) -> list[Call]:
        """API calls in arrival order (control API excluded)."""
        with self._lock:
            return list(self._state.calls)

    def status_of(self, runner_id: int) -> str:
        """The REST ``status`` of a runner now (runners API)."""
        with self._lock:
            return self._state.runner_status(self._state.runners[runner_id])

    # ---------------------------------------------------------------- mutating state
    def expire_token(self, runner_id: int) -> None:
        """Set ``token_expires_at`` to now: the token is refused (403) from now on."""
        with self._lock:
            self._state.runners[runner_id].token_expires_at = self.clock.now()

    def revoke_token(self, runner_id: int) -> str:
        """Rotate the token out of band (as if someone else reset it); returns the new token."""
        with self._lock:
            return self._state.rotate_token(self._state.runners[runner_id])

    def update_runner(self, runner_id: int, **fields: Any) -> Runner:
        """Set runner attributes directly (e.g. ``contacted_at``); returns a copy."""
        with self._lock:
            runner = self._state.runners[runner_id]
            for name, value in fields.items():
                if name in ("id", "token") or not hasattr(runner, name):
                    raise AttributeError(f"cannot set Runner.{name}")
                setattr(runner, name, value)
            return runner.snapshot()

    def delete_runner(self, runner_id: int) -> None:
        """Delete a runner out of band (as in the UI): managers gone, token revoked."""
        with self._lock:
            self._state.delete_runner(self._state.runners[runner_id])

    def create_runner(self, runner_type: str = "instance_type", **fields: Any) -> Runner:
        """Create a runner directly in state (no API call, no permission check); returns a copy."""
        with self._lock:
            return self._state.create_runner(runner_type=runner_type, creator=None, **fields).snapshot()

    def add_runner_project(self, runner_id: int, project_id: int) -> None:
        """Assign a project runner to one more project (for the multi-project rules of runners API)."""
        with self._lock:
            runner = self._state.runners[runner_id]
            if project_id not in runner.project_ids:
                runner.project_ids.append(project_id)

    def enqueue_job(
        self, runner_id: int | None = None, tags: list[str] | None = None, payload: dict[str, Any] | None = None
    ) -> int:
        """Queue a job for ``POST /jobs/request`` (job requests); returns its id."""
        with self._lock:
            return self._state.enqueue_job(runner_id=runner_id, tags=tags, payload=payload).id

    @property
    def assigned_jobs(self) -> list[tuple[int, int | None, str | None]]:
        """``(job_id, runner_id, system_id)`` of every job handed out."""
        with self._lock:
            return [(j.id, j.assigned_runner_id, j.assigned_system_id) for j in self._state.assigned_jobs]

    def deploy_tokens(self) -> list[DeployToken]:
        """Copies of every deploy token, revoked and expired ones included (the ``token`` field is the secret)."""
        with self._lock:
            return [copy.copy(t) for t in self._state.deploy_tokens.values()]

    def active_deploy_tokens(self) -> list[DeployToken]:
        """Copies of the tokens GitLab's lookup would find (``?active=true``) under the current expiry mode."""
        with self._lock:
            now, settings = self._state.clock.now(), self._state.settings
            return [copy.copy(t) for t in self._state.deploy_tokens.values() if t.findable(now, settings)]

    def registry_certificate_pem(self) -> bytes:
        """The certificate of the key ``/jwt/auth`` signs with: the registry's ``auth.token.rootcertbundle``."""
        with self._lock:
            return registry_auth.signing_key(self._state).certificate_pem

    def revoke_deploy_token(self, token_id: int) -> None:
        """Revoke out of band, as a user would in GitLab's settings page."""
        with self._lock:
            self._state.deploy_tokens[token_id].revoked = True

    def create_deploy_token(
        self,
        *,
        name: str,
        scopes: list[str],
        project_id: int | None = None,
        group_id: int | None = None,
        username: str | None = None,
        expires_at: datetime | None = None,
    ) -> DeployToken:
        """Create directly (a stray or a token someone else made); the reply carries the token."""
        with self._lock:
            state = self._state
            return copy.copy(
                deploy_tokens.create(
                    state,
                    name=name,
                    scopes=scopes,
                    username=username,
                    expires_at=expires_at,
                    project=state.projects[project_id] if project_id is not None else None,
                    group=state.groups[group_id] if group_id is not None else None,
                )
            )

    def reset(self) -> None:
        """Clear runners, deploy tokens, calls, token counters, jobs, faults and the GraphQL test switch; keep users,
        groups, projects, access tokens, settings, the instance and the clock. The cleared runners' tokens are added to
        ``revoked_tokens``."""
        with self._lock:
            self._state.clear_runtime()
            graphql_api.reset(self._state)
        self.faults.clear()

    # ---------------------------------------------------------------- JSON views (control API)
    def runner_json(self, runner_id: int) -> dict[str, Any]:
        with self._lock:
            return self._runner_json(self._state.runners[runner_id])

    def _runner_json(self, r: Runner) -> dict[str, Any]:
        state = self._state
        return {
            "id": r.id,
            "runner_type": r.runner_type,
            "token": mask_token(r.token),
            "token_expires_at": iso(r.token_expires_at),
            "token_expired": state.token_expired(r),
            "description": r.description,
            "maintenance_note": r.maintenance_note,
            "paused": r.paused,
            "locked": r.locked,
            "run_untagged": r.run_untagged,
            "tag_list": list(r.tag_list),
            "access_level": r.access_level,
            "maximum_timeout": r.maximum_timeout,
            "contacted_at": iso(r.contacted_at),
            "created_at": iso(r.created_at),
            "creation_state": r.creation_state,
            "status": state.runner_status(r),
            "online": state.is_online(r.contacted_at),
            "group_id": r.group_id,
            "project_ids": list(r.project_ids),
            "managers": [
                {
                    "id": m.id,
                    "system_id": m.system_id,
                    "version": m.version,
                    "revision": m.revision,
                    "platform": m.platform,
                    "architecture": m.architecture,
                    "executor": m.executor,
                    "ip_address": m.ip_address,
                    "contacted_at": iso(m.contacted_at),
                    "created_at": iso(m.created_at),
                    "status": state.manager_status(m),
                }
                for m in sorted(r.managers.values(), key=lambda m: m.id)
            ],
        }

    def state_json(self) -> dict[str, Any]:
        """Everything the control API shows; tokens masked."""
        with self._lock:
            state = self._state
            return {
                "now": iso(self.clock.now()),
                "settings": state.settings.as_dict(),
                "runners": [self._runner_json(r) for r in sorted(state.runners.values(), key=lambda r: r.id)],
                "revoked_tokens": len(state.revoked_tokens),
                "version": state.instance.version,
                "access_tokens": len(state.access_tokens),
                "calls": len(state.calls),
                "pending_jobs": len(state.pending_jobs),
                "faults": [f.as_dict() for f in self.faults.rules],
            }

    # ---------------------------------------------------------------- used by the handler
    def _handle(self, req: api.Request) -> tuple[api.Response, api.CallInfo]:
        info = api.CallInfo()
        with self._lock:
            try:
                return api.dispatch(self._state, req, info), info
            except Exception as exc:  # a bug in the fake: answer 500 and keep serving
                self.internal_errors.append(f"{req.method} {req.path}: {type(exc).__name__}")
                # Type and frames only: an exception message could quote a request value.
                sys.stderr.write(f"fake GitLab: internal error {type(exc).__name__} on {req.method} {req.path}\n")
                sys.stderr.write("".join(traceback.format_tb(exc.__traceback__)))
                return api.Response(500, {"message": "500 Internal Server Error"}), info

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _record(
        self,
        req: api.Request,
        path: str,
        status: int,
        info: api.CallInfo,
        fault: str | None,
        at: datetime,
        started: float,
    ) -> None:
        params = req.params
        call = Call(
            method=req.method,
            path=path,
            status=status,
            query=redact(req.query),
            body_keys=list(req.body),
            time=at,
            user=info.user,
            runner_id=info.runner_id,
            fault=fault,
            params={k: copy.deepcopy(params[k]) for k in SAFE_PARAMS if k in params},
            duration=time.monotonic() - started,
            user_agent=req.headers.get("user-agent", ""),
        )
        with self._lock:
            self._state.calls.append(call)
