"""Pure builders of a `Runner`'s children: config.toml (`config_toml`), its Secrets (`secrets`) and the
StatefulSet of manager pods (`statefulset`); the names, labels and system_ids they share (`common`).

Nothing here does I/O or imports a client: every function takes plain values (or the typed `RunnerSpec`) and returns
plain dicts ready to send to the Kubernetes API, or the config.toml text with its checksums.
"""

from .common import (
    ANNOTATION_CONFIG_CHECKSUM,
    ANNOTATION_CONFIG_SHA256,
    ANNOTATION_CONFIG_TOKEN_FREE_SHA256,
    ANNOTATION_CONFIG_VERSION,
    ANNOTATION_RUNNER_ID,
    ANNOTATION_TOKEN_EXPIRES_AT,
    ANNOTATION_TOKEN_OBTAINED_AT,
    CA_FILE,
    CA_MOUNT,
    CONFIG_DIR,
    CONFIG_KEY,
    CONTAINER_NAME,
    HOME_DIR,
    LABEL_RUNNER,
    LISTEN_ADDRESS,
    METRICS_PORT,
    RUNNER_SCRIPT,
    SECRETS_MOUNT,
    SYSTEM_ID_KEY_PREFIX,
    TOKEN_KEY,
    TOKEN_PLACEHOLDER,
    TOKEN_SECRET_TYPE,
    ChildNames,
    child_name_problem,
    child_names,
    drain_script,
    labels,
    selector_labels,
    system_id,
)
from .config_toml import RenderedConfig, render_config_toml
from .secrets import build_config_secret, build_token_secret, system_id_key
from .statefulset import build_statefulset

__all__ = [
    "ANNOTATION_CONFIG_CHECKSUM",
    "ANNOTATION_CONFIG_SHA256",
    "ANNOTATION_CONFIG_TOKEN_FREE_SHA256",
    "ANNOTATION_CONFIG_VERSION",
    "ANNOTATION_RUNNER_ID",
    "ANNOTATION_TOKEN_EXPIRES_AT",
    "ANNOTATION_TOKEN_OBTAINED_AT",
    "CA_FILE",
    "CA_MOUNT",
    "CONFIG_DIR",
    "CONFIG_KEY",
    "CONTAINER_NAME",
    "HOME_DIR",
    "LABEL_RUNNER",
    "LISTEN_ADDRESS",
    "METRICS_PORT",
    "RUNNER_SCRIPT",
    "SECRETS_MOUNT",
    "SYSTEM_ID_KEY_PREFIX",
    "TOKEN_KEY",
    "TOKEN_PLACEHOLDER",
    "TOKEN_SECRET_TYPE",
    "ChildNames",
    "RenderedConfig",
    "build_config_secret",
    "build_statefulset",
    "build_token_secret",
    "child_name_problem",
    "child_names",
    "drain_script",
    "labels",
    "render_config_toml",
    "selector_labels",
    "system_id",
    "system_id_key",
]
