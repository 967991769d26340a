"""Resync pacing from the GitLab budget (controller.pacing): the interval stretches only as far as the fleet's
measured cost asks."""

from __future__ import annotations

import pytest

from glrt_operator.controller.pacing import Pacing
from glrt_operator.settings import ConfigError, OperatorConfig


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_cheap_fleet_keeps_the_base_interval() -> None:
    pacing = Pacing(300, 0.1, 2000)
    for n in range(100):
        pacing.record(f"uid-{n}", 2)  # 200 calls a cycle: 40 a minute at 300 s, under 200 (a tenth)
    assert pacing.effective_interval() == 300


def test_an_expensive_fleet_stretches_to_its_share_of_the_budget() -> None:
    pacing = Pacing(300, 0.1, 2000)
    for n in range(5000):
        pacing.record(f"uid-{n}", 2)  # 10,000 calls a cycle at 200 a minute: 50 minutes
    assert pacing.effective_interval() == pytest.approx(3000)
    pacing.forget("uid-0")
    assert pacing.effective_interval() == pytest.approx(2999.4)


def test_a_stretched_interval_skips_timer_ticks() -> None:
    clock = Clock()
    pacing = Pacing(300, 0.1, 600, clock=clock)
    for n in range(450):
        pacing.record(f"uid-{n}", 2)  # 900 calls a cycle at 60 a minute: 900 s, three ticks of 300 s
    assert pacing.due("new-uid")  # never resynced: due
    clock.now += 300
    assert not pacing.due("uid-0")
    clock.now += 300
    assert not pacing.due("uid-0")
    clock.now += 300
    assert pacing.due("uid-0")


def test_the_interval_follows_each_objects_last_cost() -> None:
    pacing = Pacing(1, 1.0, 60)  # one call a second
    pacing.record("a", 100)  # the resync that paid for a batch read
    assert pacing.effective_interval() == pytest.approx(100)
    pacing.record("b", 100)  # the next cycle's read, paid by another object
    pacing.record("a", 0)  # served by it
    assert pacing.effective_interval() == pytest.approx(100)  # one read a cycle, counted once
    pacing.record("b", 0)
    assert pacing.effective_interval() == 1


def test_a_new_fleets_one_off_token_checks_stretch_the_interval_for_one_cycle_only() -> None:
    clock = Clock()
    pacing = Pacing(75, 0.1, 2000, clock=clock)  # 200 calls a minute for resyncs
    fleet = [f"uid-{n}" for n in range(1000)]
    for uid in fleet:
        pacing.record(uid, 1)  # first resyncs, before the managers polled: a token check each
    assert pacing.effective_interval() == pytest.approx(300)  # 1,000 calls at 200 a minute
    clock.now += 300
    assert all(pacing.due(uid) for uid in fleet)
    for uid in fleet:
        pacing.record(uid, 0)  # the managers polled since: served by the batch read (its page paid elsewhere)
    assert pacing.effective_interval() == 75  # back to the base interval after one stretched cycle


def test_the_share_setting() -> None:
    assert OperatorConfig.from_env({}).resync_budget_share == 0.1
    assert OperatorConfig.from_env({"GLRT_RESYNC_BUDGET_SHARE": "0.25"}).resync_budget_share == 0.25
    for bad in ("0", "1.5", "a tenth"):
        with pytest.raises(ConfigError, match="GLRT_RESYNC_BUDGET_SHARE"):
            OperatorConfig.from_env({"GLRT_RESYNC_BUDGET_SHARE": bad})


def test_each_connection_is_paced_from_its_own_budget() -> None:
    pacing = Pacing(300, 0.1, 2000)
    busy, quiet = object(), object()  # two connections' budgets
    for n in range(5000):
        pacing.record(f"busy-{n}", {busy: 2})  # 10,000 calls a cycle on one connection: 50 minutes
    for n in range(10):
        pacing.record(f"quiet-{n}", {quiet: 2})
    assert pacing.effective_interval("busy-0") == pytest.approx(3000)
    assert pacing.effective_interval("quiet-0") == 300  # not stretched by another connection's fleet
    assert pacing.effective_interval() == pytest.approx(3000)  # the metric: the longest
    pacing.record("quiet-0", {})  # served from caches: stays on its connection
    assert pacing.effective_interval("quiet-0") == 300
