"""gitlab-runner's config.toml for a `Runner` (pure).

config.toml is produced with `tomli_w` from a dict, never by string formatting, so no user-supplied string
(description, tags, image, environment, node selector, ...) can add keys or sections to it. The same input always
gives the same bytes, so checksums can decide whether anything changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import tomli_w

from ..model import CacheSpec, KubernetesExecutor, RunnerSpec
from .common import LISTEN_ADDRESS, TOKEN_PLACEHOLDER, _set_if


@dataclass(frozen=True)
class RenderedConfig:
    """config.toml as written, its sha256, and the sha256 of the same file with the token replaced.

    `token_free_sha256` changes only when something other than the token changes: use it for the pod template's
    checksum annotation, so a token rotation reaches running pods through the Secret volume (gitlab-runner reloads
    the file) instead of restarting them.
    """

    text: str
    sha256: str
    token_free_sha256: str


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _kubernetes_table(k: KubernetesExecutor, default_namespace: str | None) -> dict[str, Any]:
    table: dict[str, Any] = {}
    # gitlab-runner falls back to the "default" namespace (not its own) when this key is empty, so the caller
    # passes the Runner's namespace as `default_namespace`.
    _set_if(table, "namespace", k.namespace or default_namespace)
    _set_if(table, "image", k.image)
    table["privileged"] = k.privileged
    _set_if(table, "service_account", k.service_account)
    _set_if(table, "cpu_request", k.cpu_request)
    _set_if(table, "cpu_limit", k.cpu_limit)
    _set_if(table, "memory_request", k.memory_request)
    _set_if(table, "memory_limit", k.memory_limit)
    _set_if(table, "helper_image", k.helper_image)
    _set_if(table, "pull_policy", list(k.pull_policy))
    _set_if(table, "node_selector", {key: k.node_selector[key] for key in sorted(k.node_selector)})
    _set_if(table, "poll_timeout", k.poll_timeout)
    _set_if(table, "image_pull_secrets", list(k.image_pull_secrets))
    return table


def _cache_table(c: CacheSpec) -> dict[str, Any]:
    """`[runners.cache]`; only the section of the chosen type is written. No credentials: the runner takes them
    from its environment (for example AWS_ACCESS_KEY_ID through `spec.manager.env`) or from workload identity."""
    table: dict[str, Any] = {"Type": c.type}
    _set_if(table, "Path", c.path)
    table["Shared"] = c.shared
    if c.type == "s3":
        s3: dict[str, Any] = {}
        _set_if(s3, "ServerAddress", c.s3_server_address)
        _set_if(s3, "BucketName", c.s3_bucket_name)
        _set_if(s3, "BucketLocation", c.s3_bucket_location)
        s3["Insecure"] = c.s3_insecure
        table["s3"] = s3
    elif c.type == "gcs":
        gcs: dict[str, Any] = {}
        _set_if(gcs, "BucketName", c.gcs_bucket_name)
        table["gcs"] = gcs
    else:
        azure: dict[str, Any] = {}
        _set_if(azure, "ContainerName", c.azure_container_name)
        table["azure"] = azure
    return table


def _config_document(
    spec: RunnerSpec,
    *,
    runner_name: str,
    runner_id: int,
    token: str,
    ca_path: str | None,
    default_namespace: str | None,
) -> dict[str, Any]:
    cfg = spec.config
    runner: dict[str, Any] = {
        "name": runner_name,
        "url": spec.gitlab.url,
        "id": runner_id,
        "token": token,
        # No token_obtained_at / token_expires_at: absent means the zero time, and gitlab-runner never rotates a
        # token whose token_expires_at is zero (see `[[runners]]` in
        # https://docs.gitlab.com/runner/configuration/advanced-configuration/). The operator owns rotation; a
        # runner rotating on its own would write the new token only to its local copy and revoke the one every
        # other replica holds.
        "executor": "kubernetes",
        "request_concurrency": cfg.request_concurrency,
        "limit": cfg.limit,
    }
    _set_if(runner, "output_limit", cfg.output_limit)
    _set_if(runner, "environment", list(cfg.environment))
    _set_if(runner, "tls-ca-file", ca_path)
    _set_if(runner, "feature_flags", {key: cfg.feature_flags[key] for key in sorted(cfg.feature_flags)})
    runner["kubernetes"] = _kubernetes_table(cfg.kubernetes, default_namespace)
    if cfg.cache is not None:
        runner["cache"] = _cache_table(cfg.cache)
    return {
        "concurrent": cfg.concurrent,
        "check_interval": cfg.check_interval,
        "log_level": cfg.log_level,
        "shutdown_timeout": cfg.shutdown_timeout,
        # Prometheus /metrics and /health/ready; the pod's probes use it and never reach GitLab.
        "listen_address": LISTEN_ADDRESS,
        "runners": [runner],
    }


def render_config_toml(
    spec: RunnerSpec,
    *,
    runner_name: str,
    runner_id: int,
    token: str,
    ca_path: str | None = None,
    default_namespace: str | None = None,
) -> RenderedConfig:
    """Render gitlab-runner's config.toml for one `[[runners]]` entry using the kubernetes executor.

    `default_namespace` (normally the Runner's own namespace) is where job pods run when
    `spec.config.kubernetes.namespace` is not set; without either, gitlab-runner would use "default".
    """

    def dump(with_token: str) -> str:
        document = _config_document(
            spec,
            runner_name=runner_name,
            runner_id=runner_id,
            token=with_token,
            ca_path=ca_path,
            default_namespace=default_namespace,
        )
        return tomli_w.dumps(document)

    text = dump(token)
    return RenderedConfig(text=text, sha256=_sha256(text), token_free_sha256=_sha256(dump(TOKEN_PLACEHOLDER)))
