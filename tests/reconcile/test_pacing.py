"""Resyncs paced by the GitLab budget, as the handlers run them: a fleet too large for its share of the budget is
resynced less often (the metric shows the interval), and annotating a Runner still resyncs it at once."""

from __future__ import annotations

import pytest

from glrt_operator import metrics
from glrt_operator.controller import runtime
from glrt_operator.controller.pacing import Pacing
from glrt_operator.runners import handlers

from .conftest import Env
from .test_handlers import call, posted  # noqa: F401 -- fixture


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_fleet_over_its_share_is_resynced_less_often_and_an_annotation_still_resyncs_at_once(
    env: Env,
    posted: list[tuple[str, str]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    pacing = Pacing(300, 0.1, 600, clock=clock)  # 60 calls a minute for resyncs, per connection
    connection = env.pool.budget(env.gitlab.api_url, "glpat-api")  # the Runner's connection (URL, token family)
    other = env.pool.budget(env.gitlab.api_url, "glpat-admin")  # another connection to the same GitLab
    for n in range(1000):
        pacing.record(f"other-{n}", {connection: 2})  # 2,000 calls a cycle on its connection: 2,000 s
        pacing.record(f"elsewhere-{n}", {other: 1})  # 1,000 calls a cycle on the other one: 1,000 s
    monkeypatch.setattr(runtime, "PACING", pacing)
    call(handlers.on_runner_created_or_changed, env)

    calls = len(env.gitlab.calls)
    call(handlers.resync_runner, env)  # its first resync: due
    assert len(env.gitlab.calls) > calls
    # The metric as the resync saw it (before its own cost was added): the longest, 2,000 calls at 60 a minute.
    assert metrics.RESYNC_EFFECTIVE_INTERVAL._value.get() == pytest.approx(2000)
    # Its resync was counted against its own connection's budget, not the other one's.
    assert pacing.effective_interval(env.ref.uid) > 2000
    assert pacing.effective_interval("elsewhere-0") == pytest.approx(1000)

    for _ in range(5):  # the timer's next ticks, one base interval apart: skipped, no request
        clock.now += 300
        calls = len(env.gitlab.calls)
        assert call(handlers.resync_runner, env) == {} and len(env.gitlab.calls) == calls
    clock.now += 600  # one effective interval after the last resync
    calls = len(env.gitlab.calls)
    call(handlers.resync_runner, env)
    assert len(env.gitlab.calls) > calls

    # kubectl annotate runner builds glrt.dev/resync=... : at once, read over REST (not from a batch).
    calls = len(env.gitlab.calls)
    runner_id = env.kube.status["runnerId"]
    call(handlers.on_resync_requested, env, reason="update", old=None, new="2026-12-02T05:00:00Z")
    paths = [c.path for c in env.gitlab.calls[calls:]]
    assert f"/api/v4/runners/{runner_id}" in paths and "/api/graphql" not in paths
    # Set at creation or removed: nothing (the create handler reconciles a new Runner).
    calls = len(env.gitlab.calls)
    call(handlers.on_resync_requested, env, reason="create", old=None, new="x")
    call(handlers.on_resync_requested, env, reason="update", old="x", new=None)
    assert len(env.gitlab.calls) == calls
