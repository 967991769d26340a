"""One active operator among its replicas, chosen through a `coordination.k8s.io` Lease (the way Kubernetes' own
controllers elect a leader: https://kubernetes.io/docs/concepts/architecture/leases/).

A replica waits until the Lease is free or its holder stopped renewing it for a whole lease duration (measured on
this replica's own clock from the last change it saw, so clocks need not agree), takes it with an optimistic
update, and only then starts Kopf. While it leads it renews every `renew_every`; if it cannot renew within
`renew_deadline` (shorter than the lease duration, so nobody else can have taken over yet) it exits at once: two
operators never act on the same objects. On a clean stop (SIGTERM) it releases the Lease, so the standby takes
over within a second. After a crash, the standby takes over once the lease duration has passed.

Kopf's own peering was not used: it makes peers of equal priority freeze each other and fails over only after its
peering timeout (a minute by default), and it needs cluster-wide rights on its peering resources.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

LOG = logging.getLogger("glrt_operator.leadership")


@dataclass(frozen=True)
class LeaseSettings:
    namespace: str
    name: str
    identity: str
    lease_seconds: float = 10.0
    renew_every: float = 2.0
    renew_deadline: float = 8.0
    retry_every: float = 1.0


def _now() -> datetime:
    return datetime.now(UTC)


class Leadership:
    """Acquire, hold and release the Lease. `clock` (monotonic seconds) and `on_lost` are injectable for tests."""

    def __init__(
        self,
        api: kubernetes.client.CoordinationV1Api,
        settings: LeaseSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_lost: Callable[[], None] | None = None,
    ):
        self._api = api
        self.settings = settings
        self._clock = clock
        self._on_lost = on_lost or _exit_now
        self._stop = threading.Event()
        self._observed: tuple[Any, ...] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self.acquired_after: float | None = None  # seconds spent waiting, for the log and the tests

    @property
    def where(self) -> str:
        return f"{self.settings.namespace}/{self.settings.name}"

    # --- waiting to lead ------------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Block until this replica holds the Lease."""
        started = self._clock()
        announced = False
        while not self._stop.is_set():
            if self._try_acquire():
                self.acquired_after = self._clock() - started
                LOG.info("leading (Lease %s), after %.1f s", self.where, self.acquired_after)
                return
            if not announced:
                LOG.info("standing by: Lease %s is held by another replica", self.where)
                announced = True
            self._stop.wait(self.settings.retry_every)

    def _try_acquire(self) -> bool:
        s = self.settings
        try:
            lease = self._api.read_namespaced_lease(s.name, s.namespace)
        except ApiException as exc:
            if exc.status != 404:
                LOG.warning("cannot read Lease %s/%s: %s %s", s.namespace, s.name, exc.status, exc.reason)
                return False
            return self._create()
        spec = lease.spec or kubernetes.client.V1LeaseSpec()
        record = (spec.holder_identity, spec.renew_time, spec.lease_transitions)
        now = self._clock()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        free = not spec.holder_identity or spec.holder_identity == s.identity
        expired = now - self._observed_at >= float(spec.lease_duration_seconds or s.lease_seconds)
        if not (free or expired):
            return False
        transitions = int(spec.lease_transitions or 0) + (0 if spec.holder_identity == s.identity else 1)
        lease.spec = self._spec(acquire=_now(), transitions=transitions)
        try:
            self._api.replace_namespaced_lease(s.name, s.namespace, lease)  # resourceVersion: one winner
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def _create(self) -> bool:
        s = self.settings
        body = kubernetes.client.V1Lease(
            metadata=kubernetes.client.V1ObjectMeta(name=s.name, namespace=s.namespace),
            spec=self._spec(acquire=_now(), transitions=0),
        )
        try:
            self._api.create_namespaced_lease(s.namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False  # another replica created it first
            raise
        return True

    def _spec(self, *, acquire: datetime | None, transitions: int | None = None) -> kubernetes.client.V1LeaseSpec:
        spec = kubernetes.client.V1LeaseSpec(
            holder_identity=self.settings.identity,
            lease_duration_seconds=int(self.settings.lease_seconds),
            renew_time=_now(),
        )
        if acquire is not None:
            spec.acquire_time = acquire
        if transitions is not None:
            spec.lease_transitions = transitions
        return spec

    # --- leading ----------------------------------------------------------------------------------------------

    def hold(self) -> threading.Thread:
        """Renew the Lease on a daemon thread until `release`; when renewing fails for `renew_deadline`, call
        `on_lost` (by default: exit the process at once)."""
        thread = threading.Thread(target=self._renew_loop, name="lease-renewal", daemon=True)
        thread.start()
        return thread

    def _renew_loop(self) -> None:
        last_renewal = self._clock()
        while not self._stop.wait(self.settings.renew_every):
            if self._renew():
                last_renewal = self._clock()
            elif self._clock() - last_renewal >= self.settings.renew_deadline:
                deadline = self.settings.renew_deadline
                LOG.error(
                    "lost the Lease %s (not renewed for %.0f s): stopping, one operator acts", self.where, deadline
                )
                self._on_lost()
                return

    def _renew(self) -> bool:
        s = self.settings
        try:
            lease = self._api.read_namespaced_lease(s.name, s.namespace)
            if lease.spec is None or lease.spec.holder_identity != s.identity:
                return False  # taken over: renewing would steal it back
            lease.spec.renew_time = _now()
            self._api.replace_namespaced_lease(s.name, s.namespace, lease)
        except ApiException as exc:
            LOG.warning("cannot renew Lease %s/%s: %s %s", s.namespace, s.name, exc.status, exc.reason)
            return False
        except Exception as exc:  # the API server unreachable: retried until the deadline
            LOG.warning("cannot renew Lease %s/%s: %s", s.namespace, s.name, type(exc).__name__)
            return False
        return True

    def release(self) -> None:
        """Stop renewing and hand the Lease over at once (a clean stop): the standby need not wait it out."""
        self._stop.set()
        s = self.settings
        try:
            lease = self._api.read_namespaced_lease(s.name, s.namespace)
            if lease.spec is not None and lease.spec.holder_identity == s.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = _now()
                self._api.replace_namespaced_lease(s.name, s.namespace, lease)
                LOG.info("released the Lease %s/%s", s.namespace, s.name)
        except Exception as exc:  # it expires by itself anyway
            LOG.warning("could not release the Lease %s/%s: %s", s.namespace, s.name, type(exc).__name__)


def _exit_now() -> None:
    """Leave at once, without Kopf's clean shutdown: handlers in flight stop where they are, and the fences around
    every non-idempotent GitLab call let the new leader finish their work."""
    logging.shutdown()
    os._exit(70)
