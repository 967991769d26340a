"""Kopf's settings are asserted in one place, as they are set in one place."""

from __future__ import annotations

import kopf

from glrt_operator import resources  # noqa: F401  (registers every handler)
from glrt_operator.controller import runtime, startup
from glrt_operator.core.api import GROUP, VERSION


def test_kopf_settings() -> None:
    settings = kopf.OperatorSettings()
    startup.apply_settings(settings)
    assert settings.persistence.finalizer == "glrt.dev/finalizer"
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert isinstance(settings.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert settings.scanning.disabled is True
    assert settings.watching.server_timeout == 300
    assert settings.watching.client_timeout == 330
    assert settings.posting.loggers is False  # only explicit Events; log lines are never posted


def test_every_lifecycle_handler_is_registered() -> None:
    registry = kopf.get_default_registry()
    resource = kopf.Resource(GROUP, VERSION, "runners")
    changing = {h.id for h in registry._changing.get_all_handlers() if h.selector and h.selector.check(resource)}
    assert {"on_runner_created_or_changed", "on_runner_resumed", "on_runner_deleted"} <= {
        i.split("/")[0] for i in changing
    }
    timers = [h for h in registry._spawning.get_all_handlers() if h.id.startswith("resync_runner")]
    assert timers and timers[0].interval == runtime.CONFIG.resync_interval
    assert timers[0].initial_delay is runtime.resync_initial_delay


def test_resyncs_of_a_fleet_are_spread_over_one_interval() -> None:
    """Kopf's timers start together after a restart; each Runner's first resync is shifted by its own phase,
    stable across restarts, and Kopf keeps that phase for the later ones (same interval)."""
    interval = runtime.CONFIG.resync_interval
    uids = [f"0b7c1f7e-1111-4000-8000-{i:012d}" for i in range(200)]
    delays = [runtime.resync_initial_delay(body=kopf.Body({"metadata": {"uid": uid}})) for uid in uids]
    assert all(interval <= d < 2 * interval for d in delays)
    assert delays == [runtime.resync_initial_delay(body=kopf.Body({"metadata": {"uid": uid}})) for uid in uids]
    # Spread: every tenth of the interval holds some of the 200 Runners, none holds more than a quarter.
    buckets = [int((d - interval) / interval * 10) for d in delays]
    assert {b: buckets.count(b) for b in range(10)}.keys() == set(buckets)
    assert max(buckets.count(b) for b in range(10)) < 50 and min(buckets.count(b) for b in range(10)) > 0


def test_timers_release_a_deleted_runner_quickly() -> None:
    settings = kopf.OperatorSettings()
    startup.apply_settings(settings)
    assert settings.background.cancellation_polling == 1


def test_kopf_waits_for_its_own_patch_longer_than_a_busy_api_server_takes_to_deliver_it() -> None:
    """Measured in `make bench` (1,000 Runners edited at once): with Kopf's 5 s, 232 of the edits were handled a
    second time, from the version before Kopf's own patch."""
    settings = kopf.OperatorSettings()
    assert settings.persistence.consistency_timeout == 5.0  # Kopf's default, which the operator raises
    startup.apply_settings(settings)
    assert settings.persistence.consistency_timeout == startup.KOPF_CONSISTENCY_SECONDS == 60.0
