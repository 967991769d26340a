"""Every Kopf registration of the operator, and its settings. Handlers stay thin: they open a per-call context,
hand it to a use case, then write the status and conditions and translate failures into Kopf's retry semantics."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

import kopf

from . import metrics
from .adapters.gitlab import THROTTLED, GitLabPool, parse_time
from .adapters.kube import DEPLOY_TOKENS, GROUP, PLURAL, VERSION, Kube, load_api_client
from .core.conditions import Condition, set_condition
from .core.errors import ReconcileError, classify
from .core.events import EventSink, EventType
from .deploytokens import reconcile as deploy_tokens
from .deploytokens.context import DeployTokenRef
from .deploytokens.status import DeployTokenStatus
from .runners.context import RunnerRef
from .runners.deletion import delete_runner
from .runners.reconcile import ReconcileOutcome, open_context, reconcile
from .runners.status import RunnerStatus
from .settings import OperatorConfig

CONFIG = OperatorConfig.from_env()
FINALIZER = "glrt.dev/finalizer"
# A deletion retries a search for what an interrupted creation may have left this many times while GitLab fails
# transiently, then finishes with a Warning (a runner whose id is known is retried until it is deleted).
DELETE_SEARCH_RETRIES = 8
T = TypeVar("T")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Startup: Kopf's settings, then the adapters, created once and kept in memo."""
    apply_settings(settings)
    kube = Kube(load_api_client())
    if not kube.runner_api_served():
        # With scanning off, Kopf would otherwise wait silently forever; exiting lets the pod restart until it is.
        raise kopf.PermanentError(f"{GROUP}/{VERSION} is not served: install the CRD (kubectl apply -f crds/)")
    memo["kube"] = kube
    memo["gitlab"] = GitLabPool(per_minute=CONFIG.gitlab_requests_per_minute, max_in_flight=CONFIG.gitlab_concurrency)
    memo["resync_pool"] = ThreadPoolExecutor(CONFIG.resync_workers, thread_name_prefix="resync")


def apply_settings(settings: kopf.OperatorSettings) -> None:
    """All Kopf settings in one place (a test asserts them)."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="glrt.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="glrt.dev", key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    # Scanning would need cluster-wide list rights on CRDs and namespaces; the CRD is installed with the chart.
    settings.scanning.disabled = True
    settings.watching.server_timeout = int(CONFIG.watch_server_timeout)
    settings.watching.client_timeout = int(CONFIG.watch_server_timeout) + 30
    settings.watching.connect_timeout = 10
    settings.networking.error_backoffs = [1, 2, 5, 10, 30, 60]
    # Event handlers only: resyncs run on memo["resync_pool"], so they never queue ahead of a new Runner.
    settings.execution.max_workers = CONFIG.workers
    # A resync in flight when its Runner is deleted finishes within seconds; don't hold the finalizer for 60.
    settings.background.cancellation_polling = 1


@kopf.on.cleanup()
def close(memo: kopf.Memo, **_: Any) -> None:
    memo["resync_pool"].shutdown(wait=False, cancel_futures=True)
    memo["gitlab"].close()


def resync_phase(uid: str, interval: float) -> float:
    """A Runner's own offset in [0, interval), stable across restarts: spreads a fleet's resyncs over the interval
    instead of firing them all in the same second after an operator restart."""
    return int(hashlib.sha256(uid.encode()).hexdigest()[:8], 16) / 0x1_0000_0000 * interval


def resync_initial_delay(body: kopf.Body, **_: Any) -> float:
    """The first resync one interval after the Runner is seen (the event handlers have just reconciled it), plus
    its phase; Kopf then repeats it every interval, so the phase holds."""
    return CONFIG.resync_interval + resync_phase(body["metadata"]["uid"], CONFIG.resync_interval)


def _run(
    use_case: Callable[[EventSink], T],
    *,
    body: kopf.Body,
    status: Mapping[str, Any],
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    retry: int,
    raise_errors: bool = True,
    tolerate_transient: bool = False,
) -> T | None:
    """Run one use case for a Runner, serialised per Runner, with a condition and an Event on failure.

    Every failure goes through `classify` (reason, message that says what to fix, retry semantics) and is logged
    as one line, never as a traceback. With `tolerate_transient`, a failure that may pass by itself (a dropped
    connection, a 5xx, a 429) leaves the conditions as they are and is retried soon, with back-off."""
    generation = body["metadata"].get("generation")
    conditions = RunnerStatus.from_dict(status).conditions
    emit = _event_sink(body)

    # One lock per Runner (memo is per object): the resync timer and the event handlers never overlap.
    lock: threading.Lock = memo.setdefault("lock", threading.Lock())
    with lock:
        try:
            with metrics.observe_reconcile("runner"):
                return use_case(emit)
        except Exception as raised:  # every failure becomes a condition (core.errors.classify)
            exc = classify(raised)
            if not raise_errors and exc.reason == THROTTLED:
                # A resync held back by the GitLab budget (or a pause GitLab asked for): nothing is wrong with the
                # Runner, and the next interval tries again. No condition, no Event.
                logger.debug("resync skipped: %s", exc.message)
                return None
            delay = max(exc.delay or 0.0, CONFIG.backoff(retry))
            if exc.reason == THROTTLED and exc.delay is not None:
                delay = exc.delay  # the budget names the moment a request may go again: no need to wait longer
            if tolerate_transient and exc.transient and not exc.permanent:
                logger.info("%s: %s (retrying in %.0f s before reporting it)", exc.reason, exc.message, delay)
                raise kopf.TemporaryError(exc.message, delay=delay) from None
            failed = _report_failure(exc, conditions, generation, emit, logger)
            patch.status.update(RunnerStatus.patch(conditions=failed))
            metrics.RUNNER.observe_ready(body["metadata"]["namespace"], body["metadata"]["name"], "False")
            if not raise_errors:
                return None
            _raise_for_kopf(exc, delay)


def _event_sink(body: kopf.Body) -> EventSink:
    def emit(type_: EventType, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message)

    return emit


def _report_failure(
    exc: ReconcileError,
    conditions: Sequence[Mapping[str, Any]],
    generation: int | None,
    emit: EventSink,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> tuple[Condition, ...]:
    """A failure as Ready=False with its reason and message (the conditions to write), one Warning Event per
    distinct problem (not one per retry) and one log line, never a traceback."""
    previous: Mapping[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
    failed = set_condition(conditions, "Ready", "False", exc.reason, exc.message, generation)
    if previous.get("message") != exc.message:
        emit("Warning", exc.reason, exc.message)
    logger.warning("%s: %s", exc.reason, exc.message)
    return tuple(failed)


def _raise_for_kopf(exc: ReconcileError, delay: float) -> NoReturn:
    """Kopf's retry semantics: a permanent failure waits for an edit, any other is retried after `delay`."""
    if exc.permanent:
        raise kopf.PermanentError(exc.message) from None
    raise kopf.TemporaryError(exc.message, delay=delay) from None


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def on_runner_created_or_changed(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    retry: int,
    **_: Any,
) -> None:
    """Created or edited: reconcile with Kopf's retries and back-off."""
    _reconcile_and_report(body, spec, status, patch, memo, logger, retry=retry, raise_errors=True)


@kopf.timer(GROUP, VERSION, PLURAL, interval=CONFIG.resync_interval, initial_delay=resync_initial_delay)
async def resync_runner(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    stopped: kopf.DaemonStopped | None = None,
    retry: int = 0,
    runtime: timedelta = timedelta(0),
    **_: Any,
) -> None:
    """Every interval, at the Runner's own phase: level-based drift repair and manager tracking, two GitLab reads
    (the runner, its managers); writes only when something drifted (a runner deleted in GitLab is created anew).
    Runs on the resync pool, not Kopf's workers, with the GitLab budget's resync priority. A transient failure is
    retried with back-off (Kopf re-runs a timer after a TemporaryError's delay) and only reported as Ready=False
    when it outlasts one resync interval."""
    if RunnerStatus.from_dict(status).observed_generation != body["metadata"].get("generation"):
        return  # the event handlers own a generation until they reconciled it, with their own back-off
    tolerate = runtime.total_seconds() < CONFIG.resync_interval
    await _resync(body, spec, status, patch, memo, logger, stopped, retry=retry, tolerate_transient=tolerate)


@kopf.on.resume(GROUP, VERSION, PLURAL)
async def on_runner_resumed(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Found at operator start, unchanged since it was last handled (a change is Kopf's update): a resync in all but
    its timing, one attempt, the timer takes over. As a resync, an operator restarted in front of a large fleet
    never queues a new Runner behind a thousand resumes."""
    await _resync(body, spec, status, patch, memo, logger)


async def _resync(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    stopped: kopf.DaemonStopped | None = None,
    *,
    retry: int = 0,
    tolerate_transient: bool = False,
) -> None:
    """Reconcile on the resync pool, not Kopf's workers, with the GitLab budget's resync priority; a resync the
    budget holds back is skipped quietly (the next interval tries again).
    Abandoned when Kopf stops the timer (the Runner is being deleted): one still queued never runs, one running
    finishes under the Runner's lock, which the deletion handler waits for. Kopf does not hold the finalizer (and
    re-run the deletion handler) until a queued resync gets its turn."""
    own = kopf.Patch()  # Kopf applies `patch` when this returns: a resync left running must not write into it then
    work = functools.partial(
        _reconcile_and_report,
        body,
        spec,
        status,
        own,
        memo,
        logger,
        retry=retry,
        raise_errors=False,
        tolerate_transient=tolerate_transient,
        resync=True,
    )
    # Kopf's own sync handlers run the same way: the context carries Kopf's event poster and logging.
    done = asyncio.get_running_loop().run_in_executor(memo["resync_pool"], contextvars.copy_context().run, work)
    if stopped is not None:
        stop: asyncio.Future[Any] = asyncio.ensure_future(stopped.wait())
        await asyncio.wait([done, stop], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not done.done():
            done.cancel()
            return
    await done
    patch.update(own)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def on_runner_deleted(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    retry: int,
    **_: Any,
) -> None:
    """Deleted: unregister the runner in GitLab before Kopf releases the finalizer."""
    ref = RunnerRef.from_body(body)
    _run(
        lambda emit: delete_runner(
            memo["kube"], memo["gitlab"], ref, spec, emit, logger, give_up_search=retry >= DELETE_SEARCH_RETRIES
        ),
        body=body,
        status=status,
        patch=patch,
        memo=memo,
        logger=logger,
        retry=retry,
    )
    metrics.forget_runner(ref.namespace, ref.name)  # reached only once GitLab no longer has the runner


def _reconcile_and_report(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    *,
    retry: int,
    raise_errors: bool,
    tolerate_transient: bool = False,
    resync: bool = False,
) -> None:
    ref = RunnerRef.from_body(body)
    pool: GitLabPool = memo["gitlab"].for_resyncs() if resync else memo["gitlab"]
    generation = body["metadata"].get("generation")

    def use_case(emit: EventSink) -> ReconcileOutcome | None:
        ctx = open_context(memo["kube"], pool, ref, spec, emit, logger, refresh_pods=CONFIG.refresh_pods)
        if resync and (ctx.status.observed_generation or 0) > (generation or 0):
            return None  # edited and reconciled while this resync waited for a worker: its spec is stale
        return reconcile(ctx)

    outcome = _run(
        use_case,
        body=body,
        status=status,
        patch=patch,
        memo=memo,
        logger=logger,
        retry=retry,
        raise_errors=raise_errors,
        tolerate_transient=tolerate_transient,
    )
    if outcome is not None:
        write_ready(outcome, generation, status, patch)
        metrics.observe_runner(
            ref.namespace,
            ref.name,
            expires_at=parse_time(outcome.token_expires_at),
            renewal_at=parse_time(outcome.renewal_time),
            manager_statuses=[r["managerStatus"] for r in outcome.replicas],
        )


def write_ready(
    outcome: ReconcileOutcome, generation: int | None, status: Mapping[str, Any], patch: kopf.Patch
) -> None:
    """The status of a reconciled Runner: its fields, TokenValid, and Ready=True."""
    patch.status.update(outcome.status_patch())
    patch.status.update(RunnerStatus.patch(observed_generation=generation))
    message = (
        f"Runner {outcome.runner_id} is registered in GitLab; {outcome.ready_replicas}/{outcome.spec_replicas} "
        f"pod(s) ready, {outcome.online_replicas} online in GitLab"
    )
    token = outcome.token_condition
    conditions = set_condition(
        RunnerStatus.from_dict(status).conditions, "TokenValid", token.status, token.reason, token.message, generation
    )
    ready = set_condition(conditions, "Ready", "True", "Reconciled", message, generation)
    patch.status.update(RunnerStatus.patch(conditions=tuple(ready)))


# === DeployToken ===============================================================================================
# Event handlers reconcile at once (with Kopf's retries); a daemon per object wakes at its renewal time or the end
# of a grace period (at least every resync interval) for level-based renewal, revocation and repair.
DELETE_ATTEMPTS = 5  # then a deletion whose access token is gone lets the object go (the tokens still expire)


def _run_deploy_token(
    use_case: Callable[[EventSink], T],
    *,
    body: kopf.Body,
    memo: kopf.Memo,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    retry: int,
    raise_errors: bool,
) -> T | None:
    """Run one use case for a DeployToken, serialised per object; on failure Ready=False and one Event per
    distinct problem. Status goes through the adapter (daemons have no end-of-handler patch)."""
    kube: Kube = memo["kube"]
    meta = body["metadata"]
    emit = _event_sink(body)
    lock: threading.Lock = memo.setdefault("lock", threading.Lock())
    with lock:
        try:
            with metrics.observe_reconcile("deploytoken"):
                return use_case(emit)
        except Exception as raised:  # every failure becomes a condition (core.errors.classify)
            exc = classify(raised)
            metrics.DEPLOY_TOKEN.observe_ready(meta["namespace"], meta["name"], "False")
            stored = DeployTokenStatus.from_dict(kube.read_deploy_token_status(meta["namespace"], meta["name"]))
            failed = _report_failure(exc, stored.conditions, meta.get("generation"), emit, logger)
            kube.patch_deploy_token_status(meta["namespace"], meta["name"], DeployTokenStatus.patch(conditions=failed))
            if not raise_errors:
                return None
            _raise_for_kopf(exc, max(exc.delay or 0.0, CONFIG.backoff(retry)))


def _reconcile_deploy_token(
    body: kopf.Body, spec: kopf.Spec, memo: kopf.Memo, logger: kopf.Logger, *, retry: int, raise_errors: bool
) -> deploy_tokens.DeployTokenOutcome | None:
    ref = DeployTokenRef.from_body(body)
    outcome = _run_deploy_token(
        lambda emit: deploy_tokens.reconcile(
            deploy_tokens.open_context(memo["kube"], memo["gitlab"], ref, spec, emit, logger)
        ),
        body=body,
        memo=memo,
        logger=logger,
        retry=retry,
        raise_errors=raise_errors,
    )
    if outcome is not None:
        write_deploy_token_ready(memo["kube"], ref, outcome, body["metadata"].get("generation"))
        metrics.observe_deploy_token(
            ref.namespace, ref.name, expires_at=outcome.expires_at, renewal_at=outcome.renewal_time, ready="True"
        )
    return outcome


def write_deploy_token_ready(
    kube: Kube, ref: DeployTokenRef, outcome: deploy_tokens.DeployTokenOutcome, generation: int | None
) -> None:
    """The status of a reconciled DeployToken: its fields, TokenValid, and Ready=True."""
    stored = DeployTokenStatus.from_dict(kube.read_deploy_token_status(ref.namespace, ref.name))
    reason, detail = ("Reissued", outcome.reissued) if outcome.reissued else ("Accepted", "GitLab lists it as active")
    conditions = set_condition(stored.conditions, "TokenValid", "True", reason, detail, generation)
    expiry = f"expires {outcome.status_patch()['expiresAt']}" if outcome.expires_at else "never expires"
    message = f"Deploy token {outcome.token_id} ({outcome.username}) is in the Secret; it {expiry}"
    ready = set_condition(conditions, "Ready", "True", "Reconciled", message, generation)
    kube.patch_deploy_token_status(
        ref.namespace,
        ref.name,
        {**outcome.status_patch(), **DeployTokenStatus.patch(observed_generation=generation, conditions=tuple(ready))},
    )


@kopf.on.resume(GROUP, VERSION, DEPLOY_TOKENS)
@kopf.on.create(GROUP, VERSION, DEPLOY_TOKENS)
@kopf.on.update(GROUP, VERSION, DEPLOY_TOKENS, field="spec")
def on_deploy_token_changed(
    body: kopf.Body, spec: kopf.Spec, memo: kopf.Memo, logger: kopf.Logger, retry: int, **_: Any
) -> None:
    """Created, edited, or found at operator start: reconcile with Kopf's retries and back-off."""
    _reconcile_deploy_token(body, spec, memo, logger, retry=retry, raise_errors=True)


@kopf.daemon(GROUP, VERSION, DEPLOY_TOKENS, cancellation_timeout=30)
async def renew_deploy_token(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    memo: kopf.Memo,
    logger: kopf.Logger,
    stopped: kopf.DaemonStopped,
    **_: Any,
) -> None:
    """Wakes at the token's renewal time or the end of a grace period, else every resync interval; failures back
    off exponentially (no hot loop). `body` and `spec` are live views: edits are seen at the next wake-up.
    Async, so that sleeping daemons hold no worker thread; each reconcile runs in Kopf's executor."""
    failures = 0
    delay = deploy_tokens.wakeup_in(deploy_tokens.next_check_of(status), datetime.now(UTC), CONFIG.resync_interval)
    while not await stopped.wait(delay):
        if (body.get("status") or {}).get("observedGeneration") != body["metadata"].get("generation"):
            delay = CONFIG.resync_interval  # the event handlers own a generation until they reconciled it
            continue
        # In Kopf's executor, with this task's context: kopf.event() finds the operator's settings there.
        outcome = await asyncio.get_running_loop().run_in_executor(
            None,
            contextvars.copy_context().run,
            lambda: _reconcile_deploy_token(body, spec, memo, logger, retry=0, raise_errors=False),
        )
        failures = 0 if outcome is not None else failures + 1
        if outcome is None:
            delay = CONFIG.backoff(failures - 1)
        else:
            delay = deploy_tokens.wakeup_in(outcome.next_check, datetime.now(UTC), CONFIG.resync_interval)


@kopf.on.delete(GROUP, VERSION, DEPLOY_TOKENS)
def on_deploy_token_deleted(
    body: kopf.Body, spec: kopf.Spec, memo: kopf.Memo, logger: kopf.Logger, retry: int, **_: Any
) -> None:
    """Deleted: revoke its tokens in GitLab before Kopf releases the finalizer."""
    ref = DeployTokenRef.from_body(body)
    _run_deploy_token(
        lambda emit: deploy_tokens.delete_deploy_token(
            memo["kube"], memo["gitlab"], ref, spec, emit, logger, give_up=retry >= DELETE_ATTEMPTS
        ),
        body=body,
        memo=memo,
        logger=logger,
        retry=retry,
        raise_errors=True,
    )
    metrics.forget_deploy_token(ref.namespace, ref.name)  # reached only once its tokens are revoked (or let go)
