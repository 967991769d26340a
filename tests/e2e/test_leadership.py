"""One active operator among replicas: the Lease against a real API server (glrt_operator.leadership)."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client

from glrt_operator.leadership import Leadership, LeaseSettings

pytestmark = pytest.mark.cluster

FAST = {"lease_seconds": 3.0, "renew_every": 0.5, "renew_deadline": 2.0, "retry_every": 0.2}


def replica(kube: client.ApiClient, namespace: str, identity: str) -> Leadership:
    return Leadership(client.CoordinationV1Api(kube), LeaseSettings(namespace, "glrt-operator", identity, **FAST))


def holder(kube: client.ApiClient, namespace: str) -> str | None:
    lease = client.CoordinationV1Api(kube).read_namespaced_lease("glrt-operator", namespace)
    identity: str | None = lease.spec.holder_identity
    return identity


def acquired_in_background(leadership: Leadership) -> threading.Thread:
    thread = threading.Thread(target=leadership.acquire, daemon=True)
    thread.start()
    return thread


def test_one_leads_the_standby_waits_and_takes_over_when_the_leader_dies(
    kube: client.ApiClient, namespace: str
) -> None:
    first = replica(kube, namespace, "pod-a")
    first.acquire()
    first.hold()
    assert holder(kube, namespace) == "pod-a"
    second = replica(kube, namespace, "pod-b")
    waiting = acquired_in_background(second)
    time.sleep(FAST["lease_seconds"] * 2)  # the leader renews: the standby keeps waiting
    assert waiting.is_alive() and holder(kube, namespace) == "pod-a"
    first._stop.set()  # the leader dies without a word (SIGKILL): no renewal, no release
    died = time.monotonic()
    waiting.join(timeout=FAST["lease_seconds"] * 3)
    took_over = time.monotonic() - died
    assert not waiting.is_alive() and holder(kube, namespace) == "pod-b"
    assert FAST["lease_seconds"] - 1.0 <= took_over <= FAST["lease_seconds"] + 2.0, took_over


def test_a_clean_stop_hands_over_at_once(kube: client.ApiClient, namespace: str) -> None:
    first = replica(kube, namespace, "pod-a")
    first.acquire()
    first.hold()
    second = replica(kube, namespace, "pod-b")
    waiting = acquired_in_background(second)
    time.sleep(1.0)
    released = time.monotonic()
    first.release()
    waiting.join(timeout=5)
    assert not waiting.is_alive() and holder(kube, namespace) == "pod-b"
    assert time.monotonic() - released < 1.5  # no lease duration to wait out


def test_a_leader_that_cannot_renew_stops_before_anyone_else_may_lead(kube: client.ApiClient, namespace: str) -> None:
    lost = threading.Event()
    leader = Leadership(
        client.CoordinationV1Api(kube), LeaseSettings(namespace, "glrt-operator", "pod-a", **FAST), on_lost=lost.set
    )
    leader.acquire()
    leader.hold()
    # Someone else took the Lease over (as after a partition): renewing would steal it back, so the leader gives up.
    api = client.CoordinationV1Api(kube)
    lease = api.read_namespaced_lease("glrt-operator", namespace)
    lease.spec.holder_identity = "pod-b"
    api.replace_namespaced_lease("glrt-operator", namespace, lease)
    assert lost.wait(FAST["renew_deadline"] + 2 * FAST["renew_every"])
    assert FAST["renew_deadline"] < FAST["lease_seconds"]  # it stops before a standby could take over
