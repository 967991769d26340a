"""The Runner's Kopf registrations: each names the use case and hands it to the controller runtime, which owns
the policy (priorities, retries, conditions, Events)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import kopf

from .. import metrics
from ..controller import runtime
from ..controller.runtime import CONFIG, Call
from ..core.api import GROUP, RUNNER, VERSION
from ..core.namespaces import EVERY_NAMESPACE
from .batch import RunnerDirectory
from .context import RunnerRef, RunnerSettings
from .deletion import delete_runner
from .reconcile import ReconcileOutcome, open_context, reconcile

# A manager's contactedAt moves with every poll of its runner: written with the next real change, not on its own.
RUNNERS = runtime.Resource(RUNNER, "runner", metrics.RUNNER, volatile=frozenset({"contactedAt"}))
# A deletion retries a search for what an interrupted creation may have left this many times while GitLab fails
# transiently, then finishes with a Warning (a runner whose id is known is retried until it is deleted).
DELETE_SEARCH_RETRIES = 8
# Any new value of this annotation asks for a resync of the Runner now.
RESYNC_ANNOTATION = "glrt.dev/resync"


def reconcile_runner(call: Call) -> ReconcileOutcome | None:
    """Make GitLab and the cluster match the Runner (`runners.reconcile`)."""
    ref = RunnerRef.from_body(call.body)
    ctx = open_context(
        call.kube, call.gitlab, ref, call.spec, call.emit, call.log, settings=settings(call), generation=call.generation
    )
    if call.resync and (ctx.status.observed_generation or 0) > (call.generation or 0):
        return None  # edited and reconciled while this resync waited for a worker: its spec is stale
    return reconcile(ctx)


# The batch reads of runners the whole operator shares (`runners.batch`).
DIRECTORY = RunnerDirectory(ttl=CONFIG.batch_read_ttl) if CONFIG.batch_reads else None


def settings(call: Call) -> RunnerSettings:
    """The operator's settings for the Runner use cases; the namespaces it serves come from its command line."""
    return RunnerSettings(
        refresh_pods=CONFIG.refresh_pods,
        executor_role=CONFIG.executor_cluster_role,
        pin_pod_ids=CONFIG.pin_pod_ids,
        scope=call.memo.get("scope", EVERY_NAMESPACE),
        directory=DIRECTORY,
        connections=CONFIG.connections,
    )


def unregister_runner(call: Call) -> None:
    """Delete the runner in GitLab (`runners.deletion`)."""
    give_up = call.retry >= DELETE_SEARCH_RETRIES
    ref = RunnerRef.from_body(call.body)
    # A deletion cleans up whatever the spec: inline connections refused since are still used to delete.
    policy = replace(CONFIG.connections, refuse_inline=False)
    delete_runner(call.kube, call.gitlab, ref, call.spec, call.emit, call.log, give_up_search=give_up, policy=policy)


@kopf.on.create(GROUP, VERSION, RUNNER.plural)
@kopf.on.update(GROUP, VERSION, RUNNER.plural, field="spec")
def on_runner_created_or_changed(**kwargs: Any) -> None:
    """Created or edited: reconcile with Kopf's retries and back-off."""
    runtime.on_event(RUNNERS, reconcile_runner, kwargs)


@kopf.timer(GROUP, VERSION, RUNNER.plural, interval=CONFIG.resync_interval, initial_delay=runtime.resync_initial_delay)
async def resync_runner(**kwargs: Any) -> None:
    """Every interval, at the Runner's own phase: drift repair and manager tracking; writes only when something
    drifted (a runner deleted in GitLab is created anew)."""
    await runtime.on_timer(RUNNERS, reconcile_runner, kwargs)


@kopf.on.resume(GROUP, VERSION, RUNNER.plural)
async def on_runner_resumed(**kwargs: Any) -> None:
    """Found at operator start, unchanged since it was last handled: a resync."""
    await runtime.on_resume(RUNNERS, reconcile_runner, kwargs)


def resync_fresh(call: Call) -> ReconcileOutcome | None:
    """A resync someone asked for: read over REST now, not from a batch read a minute old."""
    ref = RunnerRef.from_body(call.body)
    fresh = replace(settings(call), directory=None)
    ctx = open_context(
        call.kube, call.gitlab, ref, call.spec, call.emit, call.log, settings=fresh, generation=call.generation
    )
    return reconcile(ctx)


@kopf.on.field(GROUP, VERSION, RUNNER.plural, field=["metadata", "annotations", RESYNC_ANNOTATION])
async def on_resync_requested(**kwargs: Any) -> None:
    """`kubectl annotate runner NAME glrt.dev/resync="$(date)" --overwrite`: resync this Runner now, whatever the
    paced interval (one attempt at resync priority, like a resume)."""
    if kwargs.get("reason") != "update" or kwargs.get("new") is None:
        return  # set at creation (the create handler reconciles) or removed
    await runtime.on_resume(RUNNERS, resync_fresh, kwargs)


@kopf.on.delete(GROUP, VERSION, RUNNER.plural)
def on_runner_deleted(**kwargs: Any) -> None:
    """Deleted: unregister the runner in GitLab before Kopf releases the finalizer."""
    runtime.on_delete(RUNNERS, unregister_runner, kwargs)
