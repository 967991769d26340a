from __future__ import annotations

import pytest

from glrt_operator.settings import ConfigError, OperatorConfig


def test_defaults() -> None:
    config = OperatorConfig.from_env({})
    assert config.resync_interval == 300.0
    assert config.backoff(0) == 15.0 and config.backoff(1) == 30.0
    assert config.backoff(100) == config.error_backoff_max
    # Safely under GitLab.com's 2,000 requests per user and minute.
    assert config.gitlab_requests_per_minute == 600 and config.gitlab_concurrency == 8
    assert config.workers > config.resync_workers


def test_environment_overrides() -> None:
    config = OperatorConfig.from_env({"GLRT_RESYNC_INTERVAL": "5", "GLRT_ERROR_BACKOFF": "0.5"})
    assert config.resync_interval == 5.0 and config.error_backoff == 0.5
    budget = OperatorConfig.from_env({"GLRT_GITLAB_REQUESTS_PER_MINUTE": "1500", "GLRT_GITLAB_CONCURRENCY": "4"})
    assert (budget.gitlab_requests_per_minute, budget.gitlab_concurrency) == (1500, 4)
    workers = OperatorConfig.from_env({"GLRT_WORKERS": "32", "GLRT_RESYNC_WORKERS": "2"})
    assert (workers.workers, workers.resync_workers) == (32, 2)
    caches = OperatorConfig.from_env(
        {"GLRT_WATCH_CACHES": "false", "GLRT_OWN_SECRET_RECHECK": "600", "GLRT_SECRET_READ_TTL": "5"}
    )
    assert (caches.watch_caches, caches.own_secret_recheck, caches.secret_read_ttl) == (False, 600.0, 5.0)
    assert not OperatorConfig.from_env({}).watch_caches  # opt-in (settings.py says why)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GLRT_RESYNC_INTERVAL": "soon"}, "expected a number of seconds"),
        ({"GLRT_RESYNC_INTERVAL": "0"}, "at least 1"),
        ({"GLRT_ERROR_BACKOFF": "100", "GLRT_ERROR_BACKOFF_MAX": "10"}, "must not exceed"),
        ({"GLRT_GITLAB_REQUESTS_PER_MINUTE": "0"}, "at least 1"),
        ({"GLRT_GITLAB_CONCURRENCY": "2.5"}, "whole number"),
        ({"GLRT_WORKERS": "many"}, "whole number"),
        ({"GLRT_WATCH_CACHES": "maybe"}, "expected true or false"),
        ({"GLRT_OWN_SECRET_RECHECK": "-1"}, "at least 0"),
    ],
)
def test_bad_settings_fail_fast(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        OperatorConfig.from_env(env)


def test_pod_refresh_is_on_by_default_and_can_be_switched_off() -> None:
    assert OperatorConfig.from_env({}).refresh_pods is True
    assert OperatorConfig.from_env({"GLRT_REFRESH_PODS": "false"}).refresh_pods is False
    assert OperatorConfig.from_env({"GLRT_REFRESH_PODS": "1"}).refresh_pods is True
    with pytest.raises(ConfigError):
        OperatorConfig.from_env({"GLRT_REFRESH_PODS": "maybe"})


def test_pod_ids_are_pinned_unless_the_platform_assigns_them() -> None:
    assert OperatorConfig.from_env({}).pin_pod_ids is True
    assert OperatorConfig.from_env({"GLRT_PIN_POD_IDS": "false"}).pin_pod_ids is False
    with pytest.raises(ConfigError):
        OperatorConfig.from_env({"GLRT_PIN_POD_IDS": "openshift"})
