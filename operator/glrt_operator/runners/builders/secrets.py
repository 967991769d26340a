"""The Secrets a `Runner` owns: its `glrt-` token, and config.toml with the replicas' system_ids (pure)."""

from __future__ import annotations

from typing import Any

from ...core.objects import b64
from .common import (
    ANNOTATION_CONFIG_SHA256,
    ANNOTATION_CONFIG_TOKEN_FREE_SHA256,
    ANNOTATION_RUNNER_ID,
    ANNOTATION_TOKEN_EXPIRES_AT,
    ANNOTATION_TOKEN_OBTAINED_AT,
    CA_COPY_KEY,
    CONFIG_KEY,
    SYSTEM_ID_KEY_PREFIX,
    TOKEN_KEY,
    TOKEN_SECRET_TYPE,
    child_metadata,
    system_id,
)
from .config_toml import RenderedConfig


def build_token_secret(
    *,
    name: str,
    namespace: str,
    owner: dict[str, Any],
    runner_name: str,
    runner_id: int,
    token: str,
    token_expires_at: str | None,
    token_obtained_at: str,
) -> dict[str, Any]:
    """The Secret holding the `glrt-` token (key `token`, base64 in `data`).

    The annotations carry what the operator needs to plan rotation; the token itself appears only in `data`.
    """
    metadata = child_metadata(name, namespace, owner, runner_name)
    annotations = {ANNOTATION_RUNNER_ID: str(runner_id), ANNOTATION_TOKEN_OBTAINED_AT: token_obtained_at}
    if token_expires_at:
        annotations[ANNOTATION_TOKEN_EXPIRES_AT] = token_expires_at
    metadata["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": TOKEN_SECRET_TYPE,
        "data": {TOKEN_KEY: b64(token)},
    }


def system_id_key(ordinal: int) -> str:
    """The config Secret's key holding replica `ordinal`'s system_id."""
    return f"{SYSTEM_ID_KEY_PREFIX}{ordinal}"


def build_config_secret(
    *,
    name: str,
    namespace: str,
    owner: dict[str, Any],
    runner_name: str,
    runner_uid: str,
    replicas: int,
    rendered: RenderedConfig,
    ca_copy: str | None = None,
) -> dict[str, Any]:
    """The Secret mounted into every manager pod: `config.toml`, `system-id-<N>` for N in range(replicas), and
    `ca_copy` (GitLab's CA bundle from another namespace) under `CA_COPY_KEY`."""
    if replicas < 0:
        raise ValueError(f"replicas must be >= 0, got {replicas}")
    metadata = child_metadata(name, namespace, owner, runner_name)
    metadata["annotations"] = {
        ANNOTATION_CONFIG_SHA256: rendered.sha256,
        ANNOTATION_CONFIG_TOKEN_FREE_SHA256: rendered.token_free_sha256,
    }
    data = {CONFIG_KEY: b64(rendered.text)}
    if ca_copy is not None:
        data[CA_COPY_KEY] = b64(ca_copy)
    for ordinal in range(replicas):
        data[system_id_key(ordinal)] = b64(system_id(runner_uid, ordinal) + "\n")
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque", "data": data}
