"""The one controller runtime every resource runs on: the policy of an event-driven reconcile, of a periodic resync
and of a deletion, written once. A resource's handlers module registers thin Kopf handlers that name the resource
and its use case; everything else is here:

- one attempt at a time per object (a lock in Kopf's per-object memo): resyncs and event handlers never overlap;
- every failure goes through `core.errors.classify` and becomes Ready=False with its reason and a message that
  says what to fix, one Warning Event per distinct problem and one log line (never a traceback);
- event handlers (create, update, delete) run on Kopf's workers at the GitLab budget's event priority and use
  Kopf's retries: a permanent failure waits for an edit, any other retries with back-off;
- resyncs (timers, the renewal daemon, resumes at start) run on their own pool at resync priority; a resync the
  budget holds back is skipped quietly, and a failure that may pass by itself (a dropped connection, a 5xx, a 429)
  is retried with back-off and reported only when it outlasts one resync interval.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, Protocol, TypeVar, cast

import kopf

from .. import metrics
from ..core.api import Kind
from ..core.conditions import reconciled_generation, set_condition
from ..core.errors import ReconcileError, classify
from ..core.events import EventType
from ..core.ports import GitLabConnector, KubePort
from ..core.reasons import RETRYING, ConditionType, Reason
from ..core.refs import Logger
from ..core.status import changes_anything
from ..settings import OperatorConfig
from .pacing import Pacing

CONFIG = OperatorConfig.from_env()
PACING = Pacing(CONFIG.resync_interval, CONFIG.resync_budget_share, CONFIG.gitlab_requests_per_minute)


class Outcome(Protocol):
    """What a use case returns for a reconciled object."""

    def ready_status(self, conditions: Any, generation: int | None) -> dict[str, Any]:
        """The status patch to write: its fields and its conditions (Ready=True)."""

    def observe(self) -> None:
        """Record the object's metrics."""


class Scheduled(Outcome, Protocol):
    """An outcome that says when to look again (a renewal, the end of a grace period)."""

    @property
    def next_check(self) -> datetime | None: ...


OutcomeT = TypeVar("OutcomeT", bound=Outcome)
ScheduledT = TypeVar("ScheduledT", bound=Scheduled)


@dataclass(frozen=True)
class Resource:
    """What the runtime knows of one resource kind."""

    kind: Kind
    controller: metrics.Controller
    metrics: metrics.ResourceMetrics
    volatile: frozenset[str] = frozenset()  # status keys whose change alone is not worth a write (core.status)


@dataclass(frozen=True)
class Call:
    """One handler invocation by Kopf, as the use cases see it: the object, the adapters (at the GitLab priority of
    the kind of work) and where Events and log lines go."""

    body: kopf.Body
    spec: Mapping[str, Any]
    memo: kopf.Memo
    log: Logger
    retry: int = 0
    resync: bool = False
    edit: bool = False  # Kopf's cause: an update

    @classmethod
    def of(cls, kwargs: Mapping[str, Any]) -> Call:
        edit = kwargs.get("reason") == "update"
        return cls(kwargs["body"], kwargs["spec"], kwargs["memo"], kwargs["logger"], kwargs.get("retry", 0), edit=edit)

    @functools.cached_property
    def kube(self) -> KubePort:
        """This call's view of the adapter: each object read once, until written."""
        kube: KubePort = self.memo["kube"]
        # A resync reads from the watch caches, an edit its children only (one not yet seen there is read; one
        # the edit before changed a moment ago may look unchanged: the next resync applies it), others never do.
        return kube.for_resync(self.body) if self.resync else kube.for_event(cached_children=self.edit)

    @property
    def gitlab(self) -> GitLabConnector:
        pool: GitLabConnector = self.memo["gitlab"]
        return pool.for_resyncs() if self.resync else pool

    @property
    def generation(self) -> int | None:
        generation: int | None = self.body["metadata"].get("generation")
        return generation

    @property
    def status(self) -> Mapping[str, Any]:
        return self.body.get("status") or {}

    @property
    def reconciled(self) -> bool:
        """Has this generation been reconciled? Until it has, the event handlers own it (with their back-off)."""
        return reconciled_generation(self.status) == self.generation

    def emit(self, type_: EventType, reason: str, message: str) -> None:
        kopf.event(self.body, type=type_, reason=reason, message=message)


Work = Callable[[Call], OutcomeT | None]
# Where a handler's status patch goes: Kopf's end-of-handler patch, or the adapter at once (daemons).
StatusSink = Callable[[dict[str, Any]], None]


@dataclass
class _Attempt:
    outcome: Any = None
    failure: ReconcileError | None = None


def _attempt(res: Resource, work: Work[OutcomeT], call: Call) -> _Attempt:
    """One run of the use case, serialised per object, with its failure classified."""
    lock: threading.Lock = call.memo.setdefault("lock", threading.Lock())
    with lock:
        try:
            with metrics.observe_reconcile(res.controller):
                return _Attempt(outcome=work(call))
        except Exception as raised:  # every failure becomes a condition (core.errors.classify)
            return _Attempt(failure=classify(raised))


def _succeeded(res: Resource, outcome: Outcome | None, call: Call, write: StatusSink) -> None:
    """Ready: the status written only when it changes what a user would act on (a resync at rest: nothing)."""
    call.memo.pop("reported", None)  # the next failure is a new problem, worth its Event
    if outcome is not None:
        status = outcome.ready_status(call.status.get("conditions"), call.generation)
        status["conditions"] = _settled(status["conditions"], call.generation)
        status["reconciledGeneration"] = call.generation
        if changes_anything(status, call.status, res.volatile):
            write(status)
        outcome.observe()


def _settled(conditions: Any, generation: int | None) -> list[Any]:
    """Reconciling and Stalled False: nothing in progress, nothing stuck (kstatus: Current)."""
    for type_ in (ConditionType.RECONCILING, ConditionType.STALLED):
        conditions = set_condition(conditions, type_, "False", Reason.RECONCILED, "", generation)
    return list(conditions)


def _progressing(res: Resource, call: Call) -> None:
    """Before an event reconcile of a new object: Reconciling=True at once (kstatus takes one without status for
    Current). An edit's stored observedGeneration lags: kstatus and Argo CD see it in progress without a write."""
    if isinstance(observed := call.status.get("observedGeneration"), int) and observed != call.generation:
        return
    conditions = call.status.get("conditions") or ()
    current: Mapping[str, Any] = next((c for c in conditions if c.get("type") == ConditionType.RECONCILING), {})
    if current.get("status") == "True" and current.get("observedGeneration") == call.generation:
        return
    message = f"Reconciling generation {call.generation}"
    marked = set_condition(conditions, ConditionType.RECONCILING, "True", Reason.PROGRESSING, message, call.generation)
    meta = call.body["metadata"]
    call.kube.patch_status(
        res.kind, meta.get("namespace"), meta["name"], {"observedGeneration": call.generation, "conditions": marked}
    )


def _report(res: Resource, exc: ReconcileError, call: Call, write: StatusSink) -> None:
    """A failure as Ready=False with its reason and message, one Warning Event per distinct problem (not one per
    retry) and one log line, never a traceback. For GitOps tools: Stalled=True when only a person can help,
    Reconciling=True while a failure that passes by itself is retried (not in a resync: a resync is no change of
    the desired state, and a tool would flap the object to progressing)."""
    conditions = call.status.get("conditions") or ()
    previous: Mapping[str, Any] = next((c for c in conditions if c.get("type") == ConditionType.READY), {})
    failed = set_condition(conditions, ConditionType.READY, "False", exc.reason, exc.message, call.generation)
    gen = call.generation
    if exc.reason not in RETRYING:
        failed = set_condition(failed, ConditionType.STALLED, "True", exc.reason, exc.message, gen)
        failed = set_condition(failed, ConditionType.RECONCILING, "False", exc.reason, "", gen)
    elif not call.resync:
        failed = set_condition(failed, ConditionType.RECONCILING, "True", exc.reason, exc.message, gen)
        failed = set_condition(failed, ConditionType.STALLED, "False", exc.reason, "", gen)
    # Known from the stored condition, or from this process's last report (a daemon's body may lag its own write).
    if exc.message not in (previous.get("message"), call.memo.get("reported")):
        call.emit("Warning", exc.reason, exc.message)
    call.memo["reported"] = exc.message
    call.log.warning("%s: %s", exc.reason, exc.message)
    write({"observedGeneration": gen, "conditions": failed})
    meta = call.body["metadata"]
    res.metrics.observe_ready(meta.get("namespace") or "", meta["name"], "False")


# Waits whose end is known: the moment the budget names, the poll of pods that are draining. Not failures to back off.
_EXACT_DELAYS = (Reason.GITLAB_THROTTLED, Reason.WAITING_FOR_PODS)


def retry_delay(exc: ReconcileError, retry: int) -> float:
    """How long to wait before the next attempt: the back-off, or longer when GitLab asked for it; exactly the
    delay a wait with a known end names."""
    if exc.reason in _EXACT_DELAYS and exc.delay is not None:
        return exc.delay
    return max(exc.delay or 0.0, CONFIG.backoff(retry))


def _raise_for_kopf(exc: ReconcileError, delay: float) -> NoReturn:
    """Kopf's retry semantics: a permanent failure waits for an edit, any other is retried after `delay`."""
    if exc.permanent:
        raise kopf.PermanentError(exc.message) from None
    raise kopf.TemporaryError(exc.message, delay=delay) from None


def _patch_sink(patch: kopf.Patch) -> StatusSink:
    return patch.status.update


# --- event handlers ---------------------------------------------------------------------------------------------


def on_event(res: Resource, work: Work[OutcomeT], kwargs: Mapping[str, Any]) -> None:
    """Created or edited: reconcile at event priority; on failure, a condition and Kopf's retry."""
    call = Call.of(kwargs)
    write = _patch_sink(kwargs["patch"])
    if kwargs.get("reason") in ("create", "update"):  # Kopf's cause: a new generation to work on
        _progressing(res, call)
    result = _attempt(res, work, call)
    if result.failure is None:
        _succeeded(res, result.outcome, call, write)
        return
    _report(res, result.failure, call, write)
    _raise_for_kopf(result.failure, retry_delay(result.failure, call.retry))


def on_delete(res: Resource, work: Callable[[Call], None], kwargs: Mapping[str, Any]) -> None:
    """Deleted: the use case's clean-up in GitLab before Kopf releases the finalizer; then the object's metrics go."""
    on_event(res, work, kwargs)
    meta = kwargs["body"]["metadata"]
    res.metrics.forget(meta.get("namespace") or "", meta["name"])  # reached only once the clean-up succeeded
    PACING.forget(meta["uid"])


# --- resyncs ----------------------------------------------------------------------------------------------------


def resync_phase(uid: str, interval: float) -> float:
    """An object's own offset in [0, interval), stable across restarts: spreads a fleet's resyncs over the interval
    instead of firing them all in the same second after an operator restart."""
    return int(hashlib.sha256(uid.encode()).hexdigest()[:8], 16) / 0x1_0000_0000 * interval


def resync_initial_delay(body: kopf.Body, **_: Any) -> float:
    """The first resync one interval after the object is seen (the event handlers have just reconciled it), plus
    its phase; Kopf then repeats it every interval, so the phase holds."""
    return CONFIG.resync_interval + resync_phase(body["metadata"]["uid"], CONFIG.resync_interval)


def _resync_once(
    res: Resource, work: Work[OutcomeT], call: Call, write: StatusSink, *, tolerate: bool
) -> OutcomeT | None:
    """One resync attempt at resync priority. Held back by the budget: skipped quietly (nothing is wrong with the
    object). A failure that may pass by itself, while `tolerate`: TemporaryError with its retry delay, the
    conditions untouched. Any other failure: reported."""
    call = replace(call, resync=True)
    result = _attempt(res, work, call)
    exc = result.failure
    if exc is None:
        _succeeded(res, result.outcome, call, write)
        return cast(OutcomeT | None, result.outcome)
    delay = retry_delay(exc, call.retry)
    if exc.reason == Reason.GITLAB_THROTTLED:
        call.log.debug("resync skipped: %s", exc.message)
    elif tolerate and exc.transient and not exc.permanent:
        call.log.info("%s: %s (retrying in %.0f s before reporting it)", exc.reason, exc.message, delay)
        raise kopf.TemporaryError(exc.message, delay=delay) from None
    else:
        _report(res, exc, call, write)
    return None


async def _on_resync_pool(
    call: Call, work: Callable[[], OutcomeT | None], stopped: kopf.DaemonStopped | None
) -> OutcomeT | None:
    """Run `work` on the resync pool, not Kopf's workers, so a slow GitLab never queues a new or deleted object
    behind hundreds of resyncs. Abandoned when Kopf stops the timer (the object is being deleted): one still queued
    never runs, one running finishes under the object's lock, which the deletion handler waits for."""
    # Kopf's own sync handlers run the same way: the context carries Kopf's event poster and logging.
    done = asyncio.get_running_loop().run_in_executor(call.memo["resync_pool"], contextvars.copy_context().run, work)
    if stopped is not None:
        stop: asyncio.Future[Any] = asyncio.ensure_future(stopped.wait())
        await asyncio.wait([done, stop], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not done.done():
            done.cancel()
            return None
    return await done


async def on_timer(res: Resource, work: Work[OutcomeT], kwargs: Mapping[str, Any]) -> None:
    """The periodic resync: level-based drift repair, at the object's own phase of the interval. A transient failure
    is retried with back-off (Kopf re-runs a timer after a TemporaryError's delay) and reported only when it outlasts
    one resync interval."""
    call = Call.of(kwargs)
    if not call.reconciled:
        return
    # Paced from its connection's budget (`controller.pacing`); a transient failure's retry is not.
    if not kwargs.get("retry") and not PACING.due(call.body["metadata"]["uid"]):
        return
    metrics.RESYNC_EFFECTIVE_INTERVAL.set(PACING.effective_interval())
    runtime: timedelta = kwargs.get("runtime") or timedelta(0)
    tolerate = runtime.total_seconds() < CONFIG.resync_interval
    await _resync(res, work, call, kwargs, tolerate=tolerate, stopped=kwargs.get("stopped"))


async def on_resume(res: Resource, work: Work[OutcomeT], kwargs: Mapping[str, Any]) -> None:
    """Found at operator start, unchanged since it was last handled (a change is Kopf's update): a resync in all
    but its timing, one attempt. An operator restarted in front of a large fleet never queues a new object behind
    a thousand resumes, and sends GitLab no more than one resync would."""
    await _resync(res, work, Call.of(kwargs), kwargs, tolerate=False, stopped=None)


async def _resync(
    res: Resource,
    work: Work[OutcomeT],
    call: Call,
    kwargs: Mapping[str, Any],
    *,
    tolerate: bool,
    stopped: kopf.DaemonStopped | None,
) -> None:
    own = kopf.Patch()  # Kopf applies `patch` when this returns: a resync left running must not write into it then
    uid = call.body["metadata"]["uid"]

    def counted() -> OutcomeT | None:  # the resync, its GitLab calls recorded for the pacing (on its pool thread)
        before = metrics.gitlab_calls_in_thread()
        try:
            return _resync_once(res, work, call, _patch_sink(own), tolerate=tolerate)
        finally:
            PACING.record(uid, metrics.calls_since(before))

    await _on_resync_pool(call, counted, stopped)
    kwargs["patch"].update(own)


def wakeup_in(next_check: datetime | None, now: datetime, resync: float, minimum: float = 0.2) -> float:
    """Seconds until the next look (pure): at `next_check` when it comes before the resync interval."""
    if next_check is None:
        return resync
    return min(resync, max(minimum, (next_check - now).total_seconds()))


async def renewal_daemon(
    res: Resource, work: Work[ScheduledT], first_check: datetime | None, kwargs: Mapping[str, Any]
) -> None:
    """A resync that wakes when the object says (`Scheduled.next_check`: a renewal, the end of a grace period), at
    least every resync interval, on the resync pool at resync priority like every resync. `body` and `spec` are live
    views: edits are seen at the next wake-up. Status goes through the adapter (Kopf patches a daemon only when it
    exits). Failures back off exponentially (no hot loop); transient ones are reported only when they outlast one
    interval."""
    call = Call.of(kwargs)
    stopped: kopf.DaemonStopped = kwargs["stopped"]
    meta = call.body["metadata"]

    kube: KubePort = call.memo["kube"]  # not `call.kube`: a call's view remembers its reads, too long for a daemon
    write: StatusSink = functools.partial(kube.patch_status, res.kind, meta.get("namespace"), meta["name"])

    failures, failing_since = 0, 0.0
    delay = wakeup_in(first_check, datetime.now(UTC), CONFIG.resync_interval)
    while not await stopped.wait(delay):
        if not call.reconciled:
            delay = CONFIG.resync_interval  # the event handlers own a generation until they reconciled it
            continue
        tolerate = not failures or time.monotonic() - failing_since < CONFIG.resync_interval
        once = functools.partial(_resync_once, res, work, replace(call, retry=failures), write, tolerate=tolerate)
        try:
            outcome = await _on_resync_pool(call, once, None)  # a reconcile in flight finishes
        except kopf.TemporaryError as tolerated:
            outcome, delay = None, float(tolerated.delay or CONFIG.backoff(failures))
        else:
            delay = CONFIG.backoff(failures)
        if outcome is not None:
            failures = 0
            delay = wakeup_in(outcome.next_check, datetime.now(UTC), CONFIG.resync_interval)
        else:
            failing_since = failing_since if failures else time.monotonic()
            failures += 1
