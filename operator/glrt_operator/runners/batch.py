"""Reads of runners for the drift check: one batch read (GitLab's GraphQL API, a page per 100 runners) per
connection and owner, kept a short while and shared by every Runner on it, instead of two REST calls per Runner.

A runner the batch does not list is looked up over REST before anything acts on its absence (it may have been
created after the batch was read): a stale batch never makes the operator re-create a runner that exists. A write
to a runner (a drift correction, a manager removed) amends the batch's copy from GitLab's answer, with no re-read. When
GraphQL cannot serve the connection (old GitLab, a token without `read_api`) reads go over REST and GraphQL is
asked again after a while; `status.gitlabReads` says which path the last reconcile used."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .. import metrics
from ..core.gitlab import BatchedRunner, BatchReadUnavailable, RunnerDetails, RunnerManager
from ..core.ports import GitLabPort
from ..core.refs import Logger

if TYPE_CHECKING:
    from .context import RunnerContext

GRAPHQL, REST = "GraphQL", "REST"


@dataclass(frozen=True)
class OwnerKey:
    """One connection (GitLab, and the access token by where it is kept) and one owner of runners."""

    url: str
    namespace: str
    credentials: str
    runner_type: str
    owner_id: int | None


class RunnerDirectory:
    """The batch reads of the whole operator (thread-safe: resyncs run on a pool). `ttl`: how old a batch may be
    when it answers; `retry_after`: how long a connection GraphQL could not serve reads over REST."""

    def __init__(
        self, ttl: float = 60.0, retry_after: float = 3600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl, self.retry_after = ttl, retry_after
        self._clock = clock
        self._lock = threading.Lock()
        self._batches: dict[OwnerKey, tuple[float, dict[int, BatchedRunner]]] = {}
        self._paths: dict[OwnerKey, str] = {}
        self._unavailable: dict[OwnerKey, float] = {}
        self._fetching: dict[OwnerKey, threading.Lock] = {}

    def runners(self, gitlab: GitLabPort, key: OwnerKey, log: Logger) -> dict[int, BatchedRunner] | None:
        """The owner's runners from a batch at most `ttl` old (read now if needed, once however many Runners ask
        at the same time); None when GraphQL cannot serve this connection (read over REST then)."""
        with self._lock:
            fetching = self._fetching.setdefault(key, threading.Lock())
        with fetching:
            now = self._clock()
            with self._lock:
                if self._unavailable.get(key, now) > now:
                    return None
                cached = self._batches.get(key)
                if cached is not None and now - cached[0] < self.ttl:
                    return cached[1]
            try:
                path = None
                if key.owner_id is not None:
                    path = self._paths.get(key) or gitlab.owner_path(key.runner_type, key.owner_id)
                found = {r.details.id: r for r in gitlab.batch_runners(key.runner_type, path)}
            except BatchReadUnavailable as exc:
                log.info("%s; reading runners one by one over REST for the next %.0f s", exc, self.retry_after)
                with self._lock:
                    self._unavailable[key] = now + self.retry_after
                    self._batches.pop(key, None)
                return None
            metrics.observe_batch_read(len(found))
            with self._lock:
                if path is not None:
                    self._paths[key] = path
                self._batches[key] = (now, found)
                self._unavailable.pop(key, None)
            return found

    def amend(self, key: OwnerKey, runner_id: int, change: Callable[[BatchedRunner], BatchedRunner]) -> None:
        """A write whose answer says what the runner is now: the batch's copy follows it (no re-read)."""
        with self._lock:
            cached = self._batches.get(key)
            if cached is not None and runner_id in cached[1]:
                cached[1][runner_id] = change(cached[1][runner_id])


def owner_key(ctx: RunnerContext) -> OwnerKey:
    spec = ctx.spec
    owner = spec.project_id if spec.runner_type == "project_type" else spec.group_id
    return OwnerKey(
        spec.gitlab.url.rstrip("/"),
        ctx.ref.namespace,
        f"{spec.gitlab.credentials.name}/{spec.gitlab.credentials.key}",
        spec.runner_type,
        None if spec.runner_type == "instance_type" else owner,
    )


def _batched(ctx: RunnerContext, runner_id: int) -> BatchedRunner | None:
    if runner_id in ctx.batched:
        return ctx.batched[runner_id]
    directory = ctx.settings.directory
    if directory is None:
        return None
    runners = directory.runners(ctx.gitlab, owner_key(ctx), ctx.log)
    if runners is None:
        return None
    ctx.gitlab_reads = GRAPHQL
    found = runners.get(runner_id)
    if found is not None:
        ctx.batched[runner_id] = found
    return found


def read_runner(ctx: RunnerContext, runner_id: int) -> RunnerDetails | None:
    """The runner as GitLab has it: from the batch, else over REST (None: GitLab has no such runner)."""
    found = _batched(ctx, runner_id)
    if found is not None:
        return found.details
    ctx.gitlab_reads = ctx.gitlab_reads or REST
    return ctx.gitlab.get_runner(runner_id)


def read_managers(ctx: RunnerContext, runner_id: int) -> list[RunnerManager]:
    found = _batched(ctx, runner_id)
    if found is not None and found.managers is not None:
        return list(found.managers)
    ctx.gitlab_reads = ctx.gitlab_reads or REST
    return ctx.gitlab.list_managers(runner_id)


def updated(ctx: RunnerContext, details: RunnerDetails) -> None:
    """After `PUT /runners/:id`: its answer is the runner as it is now, for the batch's copy too."""
    if ctx.settings.directory is not None:
        ctx.settings.directory.amend(owner_key(ctx), details.id, lambda found: replace(found, details=details))


def manager_removed(ctx: RunnerContext, runner_id: int, system_id: str) -> None:
    """After a runner manager was deleted: the batch's copy lists it no more."""

    def without(found: BatchedRunner) -> BatchedRunner:
        managers = found.managers
        return replace(
            found, managers=None if managers is None else tuple(m for m in managers if m.system_id != system_id)
        )

    if ctx.settings.directory is not None:
        ctx.settings.directory.amend(owner_key(ctx), runner_id, without)
