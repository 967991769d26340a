"""Every Kopf registration of the operator, and its settings. Handlers stay thin: they hand the body to the
`Reconciler`, then write the status and conditions and translate failures into Kopf's retry semantics."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import kopf
from kubernetes.client.exceptions import ApiException

from .conditions import set_condition
from .gitlab import GitLabPool
from .kube import GROUP, PLURAL, VERSION, Kube, describe_api_error, load_api_client
from .reconcile import EventType, ReconcileError, Reconciler, ReconcileResult, RunnerRef
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


def _run(
    action: Callable[[Reconciler, Callable[[EventType, str, str], None]], T],
    *,
    body: kopf.Body,
    status: Mapping[str, Any],
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    retry: int,
    raise_errors: bool = True,
) -> T | None:
    """Run one reconciler step for a Runner, serialised per Runner, with conditions and Events on failure."""
    generation = body["metadata"].get("generation")
    conditions = status.get("conditions")

    def emit(type_: EventType, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message)

    # One lock per Runner (memo is per object): the resync timer and the event handlers never overlap.
    lock: threading.Lock = memo.setdefault("lock", threading.Lock())
    with lock:
        reconciler = Reconciler(memo["kube"], memo["gitlab"], logger)
        try:
            try:
                result = action(reconciler, emit)
            except ApiException as api_error:
                raise ReconcileError("KubernetesAPIError", describe_api_error(api_error)) from None
        except ReconcileError as exc:
            previous: Mapping[str, Any] = next((c for c in conditions or () if c.get("type") == "Ready"), {})
            patch.status["conditions"] = set_condition(
                conditions, "Ready", "False", exc.reason, exc.message, generation
            )
            if previous.get("message") != exc.message:  # one Event per distinct problem, not one per retry
                emit("Warning", exc.reason, exc.message)
            logger.warning("%s: %s", exc.reason, exc.message)
            if not raise_errors:
                return None
            if exc.permanent:
                raise kopf.PermanentError(exc.message) from None
            delay = max(exc.delay or 0.0, CONFIG.backoff(retry))
            raise kopf.TemporaryError(exc.message, delay=delay) from None
    return result


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    retry: int,
    **_: Any,
) -> None:
    _reconcile(body, spec, status, patch, memo, logger, retry=retry, raise_errors=True)


@kopf.timer(GROUP, VERSION, PLURAL, interval=CONFIG.resync_interval, initial_delay=CONFIG.resync_interval)
def resync(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Level-based drift repair and manager tracking: per Runner per interval, two GitLab reads (the runner, its
    managers); writes only when something drifted (a runner deleted in GitLab is created anew)."""
    if status.get("observedGeneration") != body["metadata"].get("generation"):
        return  # the event handlers own a generation until they reconciled it, with their own back-off
    _reconcile(body, spec, status, patch, memo, logger, retry=0, raise_errors=False)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def unregister(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    retry: int,
    **_: Any,
) -> None:
    ref = RunnerRef.from_body(body)
    _run(
        lambda r, emit: r.unregister(ref, spec, emit),
        body=body,
        status=status,
        patch=patch,
        memo=memo,
        logger=logger,
        retry=retry,
    )


def _reconcile(
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
    result = _run(
        lambda r, emit: r.reconcile(ref, spec, emit),
        body=body,
        status=status,
        patch=patch,
        memo=memo,
        logger=logger,
        retry=retry,
        raise_errors=raise_errors,
    )
    _write_ready(result, body, status, patch)


def _write_ready(result: ReconcileResult | None, body: kopf.Body, status: Mapping[str, Any], patch: kopf.Patch) -> None:
    if result is None:
        return
    generation = body["metadata"].get("generation")
    fields = result.fields
    for key, value in fields.items():
        patch.status[key] = value
    patch.status["observedGeneration"] = generation
    ready = sum(1 for r in fields["replicas"] if r["managerStatus"] == "online")
    message = (
        f"Runner {fields['runnerId']} is registered in GitLab; {fields['readyReplicas']}/{len(fields['replicas'])} "
        f"pod(s) ready, {ready} online in GitLab"
    )
    conditions = set_condition(status.get("conditions"), "TokenValid", *result.token_condition, generation)
    patch.status["conditions"] = set_condition(conditions, "Ready", "True", "Reconciled", message, generation)
