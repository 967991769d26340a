"""gitlab-runner's config.toml for a `Runner` (pure).

config.toml is produced with `tomli_w` from a dict (runner_config.render), never by string formatting, so no
user-supplied string (description, tags, image, environment, node selector, ...) can add keys or sections to it.
The same input always gives the same bytes, so checksums can decide whether anything changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import tomli_w

from ...runner_config.credentials import TomlPath
from ...runner_config.render import render_document
from ..model import RunnerSpec
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


def _config_document(
    spec: RunnerSpec,
    *,
    runner_name: str,
    runner_id: int,
    token: str,
    ca_path: str | None,
    default_namespace: str | None,
    credentials: Mapping[TomlPath, str],
) -> dict[str, Any]:
    config = spec.config.effective()
    if default_namespace and not config["kubernetes"].get("namespace"):
        # gitlab-runner falls back to the "default" namespace (not its own) when this key is empty, so the caller
        # passes the Runner's namespace.
        config["kubernetes"] = {**config["kubernetes"], "namespace": default_namespace}
    owned_runner: dict[str, Any] = {
        "name": runner_name,
        "url": spec.gitlab.url,
        "id": runner_id,
        "token": token,
        # No token_obtained_at / token_expires_at: absent means the zero time, and gitlab-runner never rotates a
        # token whose token_expires_at is zero (see `[[runners]]` in
        # https://docs.gitlab.com/runner/configuration/advanced-configuration/). The operator owns rotation; a
        # runner rotating on its own would write the new token only to its local copy and revoke the one every
        # other replica holds.
    }
    _set_if(owned_runner, "tls-ca-file", ca_path)
    # Prometheus /metrics and /health/ready; the pod's probes use it and never reach GitLab.
    owned_global = {"listen_address": LISTEN_ADDRESS}
    return render_document(config, owned_global=owned_global, owned_runner=owned_runner, credentials=credentials)


def render_config_toml(
    spec: RunnerSpec,
    *,
    runner_name: str,
    runner_id: int,
    token: str,
    ca_path: str | None = None,
    default_namespace: str | None = None,
    credentials: Mapping[TomlPath, str] | None = None,
) -> RenderedConfig:
    """Render gitlab-runner's config.toml for one `[[runners]]` entry: every key of spec.config over the operator's
    defaults (`model.CONFIG_DEFAULTS`), and the keys the operator owns (which spec.config cannot set).

    `default_namespace` (normally the Runner's own namespace) is where job pods run when
    `spec.config.kubernetes.namespace` is not set; without either, gitlab-runner would use "default".
    `credentials`: the values of the `<key>SecretRef`s in spec.config, by TOML path, as `config_credentials`
    gives them (`runner_config.credentials.resolved_credentials`). Raises RenderError when one is missing.
    """

    def dump(with_token: str) -> str:
        document = _config_document(
            spec,
            runner_name=runner_name,
            runner_id=runner_id,
            token=with_token,
            ca_path=ca_path,
            default_namespace=default_namespace,
            credentials=credentials or {},
        )
        return tomli_w.dumps(document)

    text = dump(token)
    return RenderedConfig(text=text, sha256=_sha256(text), token_free_sha256=_sha256(dump(TOKEN_PLACEHOLDER)))
