"""Every Kopf registration of the operator, and its settings. Handlers stay thin: they open a per-call context,
hand it to a use case, then write the status and conditions and translate failures into Kopf's retry semantics."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import kopf

from .adapters.gitlab import GitLabPool
from .adapters.kube import DEPLOY_TOKENS, GROUP, PLURAL, VERSION, Kube, load_api_client
from .core.conditions import set_condition
from .core.errors import ReconcileError
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
    memo["gitlab"] = GitLabPool()


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
    settings.execution.max_workers = 8
    # A resync in flight when its Runner is deleted finishes within seconds; don't hold the finalizer for 60.
    settings.background.cancellation_polling = 1


@kopf.on.cleanup()
def close(memo: kopf.Memo, **_: Any) -> None:
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
) -> T | None:
    """Run one use case for a Runner, serialised per Runner, with a condition and an Event on failure."""
    generation = body["metadata"].get("generation")
    conditions = RunnerStatus.from_dict(status).conditions

    def emit(type_: EventType, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message)

    # One lock per Runner (memo is per object): the resync timer and the event handlers never overlap.
    lock: threading.Lock = memo.setdefault("lock", threading.Lock())
    with lock:
        try:
            return use_case(emit)
        except ReconcileError as exc:
            previous: Mapping[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
            failed = set_condition(conditions, "Ready", "False", exc.reason, exc.message, generation)
            patch.status.update(RunnerStatus.patch(conditions=tuple(failed)))
            if previous.get("message") != exc.message:  # one Event per distinct problem, not one per retry
                emit("Warning", exc.reason, exc.message)
            logger.warning("%s: %s", exc.reason, exc.message)
            if not raise_errors:
                return None
            if exc.permanent:
                raise kopf.PermanentError(exc.message) from None
            delay = max(exc.delay or 0.0, CONFIG.backoff(retry))
            raise kopf.TemporaryError(exc.message, delay=delay) from None


@kopf.on.resume(GROUP, VERSION, PLURAL)
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
    """Created, edited, or found at operator start: reconcile with Kopf's retries and back-off."""
    _reconcile_and_report(body, spec, status, patch, memo, logger, retry=retry, raise_errors=True)


@kopf.timer(GROUP, VERSION, PLURAL, interval=CONFIG.resync_interval, initial_delay=resync_initial_delay)
def resync_runner(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Every interval, at the Runner's own phase: level-based drift repair and manager tracking, two GitLab reads
    (the runner, its managers); writes only when something drifted (a runner deleted in GitLab is created anew)."""
    if RunnerStatus.from_dict(status).observed_generation != body["metadata"].get("generation"):
        return  # the event handlers own a generation until they reconciled it, with their own back-off
    _reconcile_and_report(body, spec, status, patch, memo, logger, retry=0, raise_errors=False)


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
        lambda emit: delete_runner(memo["kube"], memo["gitlab"], ref, spec, emit, logger),
        body=body,
        status=status,
        patch=patch,
        memo=memo,
        logger=logger,
        retry=retry,
    )


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
) -> None:
    ref = RunnerRef.from_body(body)
    outcome = _run(
        lambda emit: reconcile(open_context(memo["kube"], memo["gitlab"], ref, spec, emit, logger)),
        body=body,
        status=status,
        patch=patch,
        memo=memo,
        logger=logger,
        retry=retry,
        raise_errors=raise_errors,
    )
    if outcome is not None:
        write_ready(outcome, body["metadata"].get("generation"), status, patch)


def write_ready(
    outcome: ReconcileOutcome, generation: int | None, status: Mapping[str, Any], patch: kopf.Patch
) -> None:
    """The status of a reconciled Runner: its fields, TokenValid, and Ready=True."""
    patch.status.update(outcome.status_patch())
    patch.status.update(RunnerStatus.patch(observed_generation=generation))
    message = (
        f"Runner {outcome.runner_id} is registered in GitLab; {outcome.ready_replicas}/{len(outcome.replicas)} "
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

    def emit(type_: EventType, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message)

    lock: threading.Lock = memo.setdefault("lock", threading.Lock())
    with lock:
        try:
            return use_case(emit)
        except ReconcileError as exc:
            conditions = DeployTokenStatus.from_dict(kube.read_deploy_token_status(meta["namespace"], meta["name"]))
            previous: Mapping[str, Any] = next((c for c in conditions.conditions if c.get("type") == "Ready"), {})
            failed = set_condition(
                conditions.conditions, "Ready", "False", exc.reason, exc.message, meta.get("generation")
            )
            kube.patch_deploy_token_status(
                meta["namespace"], meta["name"], DeployTokenStatus.patch(conditions=tuple(failed))
            )
            if previous.get("message") != exc.message:
                emit("Warning", exc.reason, exc.message)
            logger.warning("%s: %s", exc.reason, exc.message)
            if not raise_errors:
                return None
            if exc.permanent:
                raise kopf.PermanentError(exc.message) from None
            raise kopf.TemporaryError(exc.message, delay=max(exc.delay or 0.0, CONFIG.backoff(retry))) from None


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
