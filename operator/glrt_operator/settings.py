"""The operator's own configuration: one frozen object read from `GLRT_*` environment variables at startup."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .core.connection import ConnectionPolicy

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


def _share(env: Mapping[str, str], name: str, default: float) -> float:
    """A fraction in (0, 1]."""
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name} must be a number between 0 and 1, got {raw!r}") from None
    if not 0 < value <= 1:
        raise ConfigError(f"{PREFIX}{name} must be more than 0 and at most 1, got {raw!r}")
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


def _count(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    if not raw.strip().isdigit():
        raise ConfigError(f"{PREFIX}{name}={raw!r}: expected a whole number")
    if int(raw) < minimum:
        raise ConfigError(f"{PREFIX}{name}={raw!r}: must be at least {minimum}")
    return int(raw)


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
    # Requests per minute on one GitLab connection (token family), all its Runners, DeployTokens and the connection
    # together: GitLab.com allows 2,000 per user and minute
    # (https://docs.gitlab.com/user/gitlab_com/#rate-limits-on-gitlabcom); the rest is left to the user's other tools.
    gitlab_requests_per_minute: int = 600
    # Requests in flight at once on one GitLab connection; a quarter of them (at least one) is kept for event handlers.
    gitlab_concurrency: int = 8
    # Kopf's worker threads for create/update/delete handlers; periodic resyncs run on their own, smaller pool so
    # that a slow GitLab never queues a new or deleted Runner behind hundreds of resyncs.
    workers: int = 16
    resync_workers: int = 4
    # The chart's ClusterRole for gitlab-runner's kubernetes executor (its permission groups are `<name>-<group>`):
    # the operator binds it in each Runner's executor namespace and may do nothing else with it.
    executor_cluster_role: str = "glrt-operator-executor"
    # Pin the manager pods' runAsUser/runAsGroup/fsGroup (the gitlab-runner chart's 100/65533/65533).
    # GLRT_PIN_POD_IDS=false leaves them to the platform: OpenShift's restricted-v2 SCC assigns them from the
    # namespace's range and refuses a pod that pins others.
    pin_pod_ids: bool = True
    # Read runners in batches through GitLab's GraphQL API (one paged query per connection and owner, shared by its
    # Runners for `batch_read_ttl` seconds); GLRT_BATCH_READS=false reads each runner over REST.
    batch_reads: bool = True
    batch_read_ttl: float = 60.0
    # The share of GLRT_GITLAB_REQUESTS_PER_MINUTE the periodic resyncs may take: beyond it the resync interval
    # stretches (`controller.pacing`).
    resync_budget_share: float = 0.1
    # Resyncs read the operator's own children from watch caches (`adapters.kube_cache`: label-selected watches of
    # StatefulSets, pods, ServiceAccounts, PodDisruptionBudgets, RoleBindings; never of Secrets) and Secrets from
    # what was last read or written: the operator's own for `own_secret_recheck` seconds, any other (an access
    # token, a CA) for `secret_read_ttl`. Off by default until the whole e2e tier has run with it (a hand edit of an
    # owned Secret, e.g. a DeployToken's, is seen by a resync only after `own_secret_recheck`): GLRT_WATCH_CACHES=true.
    watch_caches: bool = False
    own_secret_recheck: float = 21600.0
    secret_read_ttl: float = 60.0
    # The namespace of ClusterGitLabConnections' token and CA Secrets (the chart's release namespace by default);
    # the operator reads and rotates them there only. Empty: ClusterGitLabConnections cannot be used.
    connection_namespace: str | None = None
    # Refuse Runners and DeployTokens with an inline spec.gitlab.url + credentialsSecretRef (connections only).
    refuse_inline_connections: bool = False

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
            gitlab_requests_per_minute=_count(env, "GITLAB_REQUESTS_PER_MINUTE", cls.gitlab_requests_per_minute, 1),
            gitlab_concurrency=_count(env, "GITLAB_CONCURRENCY", cls.gitlab_concurrency, 1),
            workers=_count(env, "WORKERS", cls.workers, 1),
            resync_workers=_count(env, "RESYNC_WORKERS", cls.resync_workers, 1),
            executor_cluster_role=env.get(PREFIX + "EXECUTOR_CLUSTER_ROLE") or cls.executor_cluster_role,
            pin_pod_ids=_flag(env, "PIN_POD_IDS", cls.pin_pod_ids),
            batch_reads=_flag(env, "BATCH_READS", cls.batch_reads),
            batch_read_ttl=_seconds(env, "BATCH_READ_TTL", cls.batch_read_ttl, 0.0),
            resync_budget_share=_share(env, "RESYNC_BUDGET_SHARE", cls.resync_budget_share),
            watch_caches=_flag(env, "WATCH_CACHES", cls.watch_caches),
            own_secret_recheck=_seconds(env, "OWN_SECRET_RECHECK", cls.own_secret_recheck, 0.0),
            secret_read_ttl=_seconds(env, "SECRET_READ_TTL", cls.secret_read_ttl, 0.0),
            connection_namespace=env.get(PREFIX + "CONNECTION_NAMESPACE") or None,
            refuse_inline_connections=_flag(env, "REFUSE_INLINE_CONNECTIONS", cls.refuse_inline_connections),
        )
        if config.error_backoff > config.error_backoff_max:
            raise ConfigError(f"{PREFIX}ERROR_BACKOFF must not exceed {PREFIX}ERROR_BACKOFF_MAX")
        return config

    @property
    def connections(self) -> ConnectionPolicy:
        return ConnectionPolicy(self.connection_namespace, self.refuse_inline_connections)

    def backoff(self, retry: int) -> float:
        """Exponential back-off for the n-th retry (0-based), capped."""
        return float(min(self.error_backoff_max, self.error_backoff * (2 ** min(retry, 20))))
