"""The operator's Prometheus metrics, in the names and conventions platform teams already alert on.

- Reconciles as controller-runtime names them (`controller_runtime_reconcile_*`), `controller` = runner or
  deploytoken: https://book.kubebuilder.io/reference/metrics-reference
- Token expiry and renewal as cert-manager names them for certificates (`*_expiration_timestamp_seconds`,
  `*_renewal_timestamp_seconds`, `*_ready_status{condition}`): https://cert-manager.io/docs/devops-tips/prometheus-metrics/
- GitLab API calls under `glrt_gitlab_api_*`, labelled by endpoint template (`/runners/:id`), never by a concrete
  path.

No label value ever comes from a token, a URL or free text: endpoint templates keep only path segments from a
fixed vocabulary, and every other label is a Kubernetes object name or a value from a fixed set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Literal
from wsgiref.simple_server import WSGIServer

import httpx
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

# Our own registry: the exposition holds exactly what is declared here (plus process and Python runtime figures).
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

Controller = Literal["runner", "deploytoken", "connection"]
CONTROLLERS: tuple[Controller, ...] = ("runner", "deploytoken", "connection")

# --- reconciles (controller-runtime names) --------------------------------------------------------------------

RECONCILE_TOTAL = Counter(
    "controller_runtime_reconcile_total",
    "Total number of reconciliations per controller, by result (success or error).",
    ["controller", "result"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "controller_runtime_reconcile_errors_total",
    "Total number of reconciliation errors per controller.",
    ["controller"],
    registry=REGISTRY,
)
RECONCILE_TIME = Histogram(
    "controller_runtime_reconcile_time_seconds",
    "Length of time per reconciliation per controller.",
    ["controller"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)

for _controller in CONTROLLERS:  # present from the start at 0, as controller-runtime does, so rate() works at once
    RECONCILE_TOTAL.labels(_controller, "success")
    RECONCILE_TOTAL.labels(_controller, "error")
    RECONCILE_ERRORS.labels(_controller)

# --- GitLab API ------------------------------------------------------------------------------------------------

GITLAB_REQUESTS = Counter(
    "glrt_gitlab_api_requests_total",
    "GitLab API calls, by endpoint template, method and status class (network: no HTTP answer).",
    ["endpoint", "method", "status_class"],
    registry=REGISTRY,
)
GITLAB_DURATION = Histogram(
    "glrt_gitlab_api_request_duration_seconds",
    "Duration of GitLab API calls (until the whole answer is read), by endpoint template and method.",
    ["endpoint", "method"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20),
    registry=REGISTRY,
)
GITLAB_RETRIES = Counter(
    "glrt_gitlab_api_retries_total",
    "GitLab API calls that failed in a way the operator retries later (429, 408, 5xx, network), by reason.",
    ["endpoint", "reason"],
    registry=REGISTRY,
)
GITLAB_ACCESS_DENIED = Counter(
    "glrt_gitlab_api_access_denied_total",
    "Calls made with the access token that GitLab answered 401 (token unknown, expired, revoked) or 403 "
    "(scope or role missing), by code.",
    ["endpoint", "code"],
    registry=REGISTRY,
)
RATE_LIMIT_WAITS = Counter(
    "glrt_gitlab_api_rate_limit_waits_total",
    "Times the operator had to wait before calling GitLab again: source=gitlab for a 429 answer, "
    "source=budget when the operator's own request budget held a call back.",
    ["source"],
    registry=REGISTRY,
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "glrt_gitlab_api_rate_limit_wait_seconds_total",
    "Seconds of those waits (GitLab's Retry-After, or the budget's delay).",
    ["source"],
    registry=REGISTRY,
)
for _source in ("gitlab", "budget"):
    RATE_LIMIT_WAITS.labels(_source)
    RATE_LIMIT_WAIT_SECONDS.labels(_source)
RESYNC_EFFECTIVE_INTERVAL = Gauge(
    "glrt_resync_effective_interval_seconds",
    "The longest interval at which objects are resynced now: GLRT_RESYNC_INTERVAL, stretched when the resyncs on "
    "one connection would take more than GLRT_RESYNC_BUDGET_SHARE of its GitLab request budget.",
    registry=REGISTRY,
)
# GitLab calls made by the current thread, by request budget (a resync runs on one thread of the resync pool).
_CALLS = threading.local()
BATCH_READS = Counter(
    "glrt_gitlab_batch_reads_total",
    "Batch reads of runners through GitLab's GraphQL API (one per connection and owner, shared by its Runners).",
    registry=REGISTRY,
)
BATCH_RUNNERS = Counter(
    "glrt_gitlab_batch_read_runners_total",
    "Runners those batch reads returned.",
    registry=REGISTRY,
)

# --- per resource (cert-manager style) -------------------------------------------------------------------------

CONDITION_STATUSES = ("True", "False", "Unknown")
MANAGER_STATUSES = ("online", "offline", "stale", "never_contacted", "not_registered")
ROTATION_REASONS = ("requested", "expiring", "interrupted", "refused", "secret_lost")


class ResourceMetrics:
    """The per-object series of one resource kind: `glrt_<kind>_token_expiration_timestamp_seconds`,
    `..._token_renewal_timestamp_seconds`, `..._ready_status{condition}`, `..._token_rotations_total{reason}`."""

    def __init__(self, kind: str, what: str, *more: Gauge | Counter):
        """`more`: the kind's other per-object families (labelled namespace and name), forgotten with the rest."""
        labels = ["namespace", "name"]
        self.expiration = Gauge(
            f"glrt_{kind}_token_expiration_timestamp_seconds",
            f"The date after which the {what} token expires, as a Unix timestamp (absent: it never expires).",
            labels,
            registry=REGISTRY,
        )
        self.renewal = Gauge(
            f"glrt_{kind}_token_renewal_timestamp_seconds",
            f"The date at which the operator renews the {what} token, as a Unix timestamp (absent: never).",
            labels,
            registry=REGISTRY,
        )
        self.ready = Gauge(
            f"glrt_{kind}_ready_status",
            f"The Ready condition of the {what}: 1 for the condition status it has, 0 for the others.",
            [*labels, "condition"],
            registry=REGISTRY,
        )
        self.rotations = Counter(
            f"glrt_{kind}_token_rotations_total",
            f"Tokens issued to replace the {what} token, by reason ({', '.join(ROTATION_REASONS)}).",
            [*labels, "reason"],
            registry=REGISTRY,
        )
        self._families: tuple[Gauge | Counter, ...] = (self.expiration, self.renewal, self.ready, self.rotations, *more)

    def observe_token(
        self, namespace: str, name: str, expires_at: datetime | None, renewal_at: datetime | None
    ) -> None:
        _set_or_remove(self.expiration, (namespace, name), expires_at)
        _set_or_remove(self.renewal, (namespace, name), renewal_at)

    def observe_ready(self, namespace: str, name: str, status: str) -> None:
        status = status if status in CONDITION_STATUSES else "Unknown"
        for value in CONDITION_STATUSES:
            self.ready.labels(namespace, name, value).set(1.0 if value == status else 0.0)

    def count_rotation(self, namespace: str, name: str, reason: str) -> None:
        if reason not in ROTATION_REASONS:
            raise ValueError(f"unknown rotation reason {reason!r}")  # a label never takes free text
        self.rotations.labels(namespace, name, reason).inc()

    def forget(self, namespace: str, name: str) -> None:
        """Drop every series of a deleted object."""
        for family in self._families:
            family.remove_by_labels({"namespace": namespace, "name": name})


def _set_or_remove(gauge: Gauge, labels: tuple[str, str], at: datetime | None) -> None:
    if at is None:
        with suppress(KeyError):
            gauge.remove(*labels)
    else:
        gauge.labels(*labels).set(at.timestamp())


RUNNER_MANAGERS = Gauge(
    "glrt_runner_managers",
    "Replicas of a Runner by the status of their GitLab runner manager (not_registered: GitLab has none yet).",
    ["namespace", "name", "status"],
    registry=REGISTRY,
)
RUNNER = ResourceMetrics("runner", "Runner's runner", RUNNER_MANAGERS)
DEPLOY_TOKEN = ResourceMetrics("deploytoken", "DeployToken's deploy")
CONNECTION_RENEWABLE = Gauge(
    "glrt_connection_token_renewable",
    "1 when the operator can renew the connection's access token itself (GitLab's self-rotation), 0 when not.",
    ["namespace", "name"],
    registry=REGISTRY,
)
# GitLabConnections by namespace and name; ClusterGitLabConnections with namespace "".
CONNECTION = ResourceMetrics("connection", "GitLab connection's access", CONNECTION_RENEWABLE)


def observe_connection(
    namespace: str, name: str, *, expires_at: datetime | None, renewal_at: datetime | None, renewable: bool
) -> None:
    """After a successful reconcile of a connection: its token dates, whether it renews itself, Ready=True."""
    CONNECTION.observe_token(namespace, name, expires_at, renewal_at)
    CONNECTION_RENEWABLE.labels(namespace, name).set(1.0 if renewable else 0.0)
    CONNECTION.observe_ready(namespace, name, "True")


def observe_runner(
    namespace: str,
    name: str,
    *,
    expires_at: datetime | None,
    renewal_at: datetime | None,
    manager_statuses: Iterable[str | None],
) -> None:
    """After a successful reconcile: token dates, Ready=True and the managers by status."""
    RUNNER.observe_token(namespace, name, expires_at, renewal_at)
    RUNNER.observe_ready(namespace, name, "True")
    counts = dict.fromkeys(MANAGER_STATUSES, 0)
    for status in manager_statuses:
        # GitLab's statuses are a fixed set; anything new counts as offline rather than becoming a label.
        counts[status if status in counts else "offline"] += 1
    for status, count in counts.items():
        RUNNER_MANAGERS.labels(namespace, name, status).set(count)


def observe_deploy_token(
    namespace: str, name: str, *, expires_at: datetime | None, renewal_at: datetime | None, ready: str
) -> None:
    """For the DeployToken controller, after each reconcile: its token dates and Ready condition status."""
    DEPLOY_TOKEN.observe_token(namespace, name, expires_at, renewal_at)
    DEPLOY_TOKEN.observe_ready(namespace, name, ready)


@contextmanager
def observe_reconcile(controller: Controller) -> Iterator[None]:
    """Time one reconcile; an exception leaving the block counts it as an error."""
    started = time.monotonic()
    try:
        yield
    except BaseException:
        RECONCILE_TOTAL.labels(controller, "error").inc()
        RECONCILE_ERRORS.labels(controller).inc()
        raise
    else:
        RECONCILE_TOTAL.labels(controller, "success").inc()
    finally:
        RECONCILE_TIME.labels(controller).observe(time.monotonic() - started)


# --- GitLab call hook ------------------------------------------------------------------------------------------

# Path segments kept in an endpoint template; any other segment (an id, a URL-encoded project path, a name)
# becomes ":id", so a template can never carry a user string.
STATIC_SEGMENTS = frozenset(
    {
        "all",
        "deploy_tokens",
        "groups",
        "jobs",
        "managers",
        "personal_access_tokens",
        "projects",
        "request",
        "reset_authentication_token",
        "runners",
        "self",
        "user",
        "users",
        "verify",
        "version",
        "graphql",
    }
)


def endpoint_template(path: str) -> str:
    """`/runners/42/managers?x=1` -> `/runners/:id/managers`."""
    segments = path.split("?", 1)[0].split("/")
    return "/".join(s if s in STATIC_SEGMENTS or s == "" else ":id" for s in segments) or "/"


def observe_gitlab_call(
    method: str,
    path: str,
    response: httpx.Response | None,
    started: float,
    user_auth: bool,
    retry_after: float | None = None,
    budget: Hashable = None,
) -> None:
    """The adapter's hook, once per HTTP call: `response` is None when no answer came (network error);
    `started` is the `time.monotonic()` before the call; `user_auth`: made with the access token; `retry_after`:
    the answer's Retry-After in seconds, as the adapter parsed it; `budget`: the request budget the call went
    through (an opaque key, never a label: the resync pacing counts each connection's calls)."""
    endpoint, method = endpoint_template(path), method.upper()
    calls = _thread_calls()
    calls[budget] = calls.get(budget, 0) + 1
    GITLAB_DURATION.labels(endpoint, method).observe(time.monotonic() - started)
    if response is None:
        GITLAB_REQUESTS.labels(endpoint, method, "network").inc()
        GITLAB_RETRIES.labels(endpoint, "network").inc()
        return
    code = response.status_code
    GITLAB_REQUESTS.labels(endpoint, method, f"{min(max(code // 100, 2), 5)}xx").inc()
    if code == 429:
        GITLAB_RETRIES.labels(endpoint, "rate_limited").inc()
        record_rate_limit_wait("gitlab", retry_after or 0.0)
    elif code >= 500:
        GITLAB_RETRIES.labels(endpoint, "server_error").inc()
    elif code == 408:
        GITLAB_RETRIES.labels(endpoint, "timeout").inc()
    elif code in (401, 403) and user_auth:
        GITLAB_ACCESS_DENIED.labels(endpoint, str(code)).inc()


def record_rate_limit_wait(source: Literal["gitlab", "budget"], seconds: float) -> None:
    """A wait imposed before the next GitLab call: GitLab's 429 (counted by the hook) or the request budget."""
    RATE_LIMIT_WAITS.labels(source).inc()
    RATE_LIMIT_WAIT_SECONDS.labels(source).inc(max(0.0, seconds))


def serve(port: int, address: str = "0.0.0.0") -> WSGIServer:
    """Serve `/metrics` on a daemon thread (prometheus_client's own HTTP server); returns the server."""
    server, _ = start_http_server(port, addr=address, registry=REGISTRY)
    return server


def observe_batch_read(runners: int) -> None:
    BATCH_READS.inc()
    BATCH_RUNNERS.inc(runners)


def _thread_calls() -> dict[Hashable, int]:
    calls: dict[Hashable, int] | None = getattr(_CALLS, "by_budget", None)
    if calls is None:
        calls = _CALLS.by_budget = {}
    return calls


def gitlab_calls_in_thread() -> dict[Hashable, int]:
    """How many GitLab calls this thread has made so far, by request budget (a copy: diff two readings with
    `calls_since` to count a piece of work)."""
    return dict(_thread_calls())


def calls_since(before: dict[Hashable, int]) -> dict[Hashable, int]:
    """The calls this thread made, by request budget, since `before` (a `gitlab_calls_in_thread()`)."""
    return {key: count - before.get(key, 0) for key, count in _thread_calls().items() if count > before.get(key, 0)}
