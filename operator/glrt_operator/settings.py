"""The operator's own configuration: one frozen object read from `GLRT_*` environment variables at startup."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

PREFIX = "GLRT_"


class ConfigError(ValueError):
    pass


def _seconds(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name}={raw!r}: expected a number of seconds") from None
    if value < minimum:
        raise ConfigError(f"{PREFIX}{name}={raw!r}: must be at least {minimum}")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) > 65535:
        raise ConfigError(f"{PREFIX}{name}={raw!r}: expected a port number (0 to 65535, 0 turns it off)")
    return int(raw)


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(PREFIX + name, "").strip().lower()
    if raw == "":
        return default
    if raw not in ("true", "false", "1", "0"):
        raise ConfigError(f"{PREFIX}{name}={raw!r}: expected true or false")
    return raw in ("true", "1")


@dataclass(frozen=True)
class OperatorConfig:
    # How often each Runner is compared with GitLab (one GET per Runner per interval; writes only on drift).
    resync_interval: float = 300.0
    # First retry delay after a GitLab or input problem, and the cap of its exponential back-off.
    error_backoff: float = 15.0
    error_backoff_max: float = 600.0
    # Kubernetes watch timeouts (seconds), so a silently dead watch connection is replaced.
    watch_server_timeout: float = 300.0
    # Port of the Prometheus endpoint `/metrics` (0: not served).
    metrics_port: int = 8081
    # Annotate manager pods after a config Secret change (a token rotation) so the kubelet refreshes their Secret
    # volume at once; needs `patch` on pods. GLRT_REFRESH_PODS=false leaves it to the kubelet's periodic sync.
    refresh_pods: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env
        config = cls(
            resync_interval=_seconds(env, "RESYNC_INTERVAL", cls.resync_interval, 1.0),
            error_backoff=_seconds(env, "ERROR_BACKOFF", cls.error_backoff, 0.1),
            error_backoff_max=_seconds(env, "ERROR_BACKOFF_MAX", cls.error_backoff_max, 1.0),
            watch_server_timeout=_seconds(env, "WATCH_SERVER_TIMEOUT", cls.watch_server_timeout, 10.0),
            metrics_port=_port(env, "METRICS_PORT", cls.metrics_port),
            refresh_pods=_flag(env, "REFRESH_PODS", cls.refresh_pods),
        )
        if config.error_backoff > config.error_backoff_max:
            raise ConfigError(f"{PREFIX}ERROR_BACKOFF must not exceed {PREFIX}ERROR_BACKOFF_MAX")
        return config

    def backoff(self, retry: int) -> float:
        """Exponential back-off for the n-th retry (0-based), capped."""
        return float(min(self.error_backoff_max, self.error_backoff * (2 ** min(retry, 20))))
