"""Kopf's settings are asserted in one place, as they are set in one place."""

from __future__ import annotations

import kopf

from glrt_operator import handlers


def test_kopf_settings() -> None:
    settings = kopf.OperatorSettings()
    handlers.apply_settings(settings)
    assert settings.persistence.finalizer == "glrt.dev/finalizer"
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert isinstance(settings.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert settings.scanning.disabled is True
    assert settings.watching.server_timeout == 300
    assert settings.watching.client_timeout == 330
    assert settings.posting.loggers is False  # only explicit Events; log lines are never posted


def test_every_lifecycle_handler_is_registered() -> None:
    registry = kopf.get_default_registry()
    resource = kopf.Resource("glrt.dev", "v1alpha1", "runners")
    changing = {h.id for h in registry._changing.get_all_handlers() if h.selector and h.selector.check(resource)}
    assert {"reconcile", "unregister"} <= {i.split("/")[0] for i in changing}
    timers = [h for h in registry._spawning.get_all_handlers() if h.id.startswith("resync")]
    assert timers and timers[0].interval == handlers.CONFIG.resync_interval


def test_timers_release_a_deleted_runner_quickly() -> None:
    settings = kopf.OperatorSettings()
    handlers.apply_settings(settings)
    assert settings.background.cancellation_polling == 1
