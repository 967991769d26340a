"""Pure builders: the desired children of a `Runner`, and gitlab-runner's config.toml.

Nothing here does I/O or imports a client: every function takes plain values (or the typed `RunnerSpec`) and
returns plain dicts ready to send to the Kubernetes API, or the config.toml text with its checksums. The same
input always gives the same output, byte for byte, so checksums can decide whether anything changed.

The children of a `Runner` named `<name>`:

- Secret `<name>-runner-token` (type `glrt.dev/runner-token`): the `glrt-` token, key `token`.
- Secret `<name>-runner-config`: `config.toml` and one `system-id-<N>` key per replica.
- StatefulSet `<name>`: the runner manager pods `<name>-0`, `<name>-1`, ...; pod N copies `system-id-N` into
  `.runner_system_id` next to config.toml, so every replica is its own, stable GitLab runner manager.

config.toml is produced with `tomli_w` from a dict, never by string formatting, so no user-supplied string
(description, tags, image, environment, node selector, ...) can add keys or sections to it.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import tomli_w

from glrt_operator.model import CacheSpec, KubernetesExecutor, RunnerSpec

# --- names, labels, annotations ------------------------------------------------------------------------------

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_RUNNER = "glrt.dev/runner"

ANNOTATION_RUNNER_ID = "glrt.dev/runner-id"
ANNOTATION_TOKEN_EXPIRES_AT = "glrt.dev/token-expires-at"
ANNOTATION_TOKEN_OBTAINED_AT = "glrt.dev/token-obtained-at"
ANNOTATION_CONFIG_SHA256 = "glrt.dev/config-sha256"
ANNOTATION_CONFIG_TOKEN_FREE_SHA256 = "glrt.dev/config-token-free-sha256"
ANNOTATION_CONFIG_CHECKSUM = "glrt.dev/config-checksum"

TOKEN_SECRET_TYPE = "glrt.dev/runner-token"
TOKEN_KEY = "token"
CONFIG_KEY = "config.toml"
SYSTEM_ID_KEY_PREFIX = "system-id-"

# --- the manager pod's layout ---------------------------------------------------------------------------------

CONTAINER_NAME = "runner"
METRICS_PORT = 9252
METRICS_PORT_NAME = "metrics"
LISTEN_ADDRESS = f":{METRICS_PORT}"

SECRETS_MOUNT = "/secrets"  # the config Secret: config.toml + system-id-<N>, kept up to date by the kubelet
CONFIG_DIR = "/etc/gitlab-runner"  # emptyDir: a symlink to config.toml and this pod's .runner_system_id
HOME_DIR = "/home/gitlab-runner"  # emptyDir: gitlab-runner's working directory
CA_MOUNT = "/certs"
CA_FILE = f"{CA_MOUNT}/ca.crt"  # pass this as `ca_path` to render_config_toml when a CA Secret is mounted

# The official gitlab-runner Helm chart's pod security defaults.
RUN_AS_USER = 100
RUN_AS_GROUP = 65533
FS_GROUP = 65533
SECRET_VOLUME_MODE = 0o440  # owner and group (fsGroup) may read; nobody may write

# Env vars the start script relies on; a user-supplied entry with one of these names is dropped.
RESERVED_ENV = frozenset({"POD_NAME", "POD_NAMESPACE"})

RUNNER_SCRIPT = f"""\
set -eu
ordinal="${{POD_NAME##*-}}"
ln -sf {SECRETS_MOUNT}/{CONFIG_KEY} {CONFIG_DIR}/config.toml
src="{SECRETS_MOUNT}/{SYSTEM_ID_KEY_PREFIX}${{ordinal}}"
if [ ! -f "$src" ]; then
  echo "glrt-operator: $src is missing: the config Secret does not cover replica ${{ordinal}} yet" >&2
  exit 1
fi
rm -f {CONFIG_DIR}/.runner_system_id
cp "$src" {CONFIG_DIR}/.runner_system_id
chmod 0600 {CONFIG_DIR}/.runner_system_id
exec gitlab-runner run --config {CONFIG_DIR}/config.toml --working-directory {HOME_DIR}
"""
"""The manager container's start script (run by `/bin/sh -c`).

- The pod's ordinal is the suffix of its StatefulSet pod name (`builds-2` -> `2`).
- config.toml is a symlink into the Secret volume. The kubelet updates that volume in place (an atomic symlink
  swap); gitlab-runner stats config.toml (following the link) every 3 s and reloads it when its mtime changes,
  so a rotated token reaches a running pod without a restart.
- `.runner_system_id` is copied from the Secret's `system-id-<ordinal>` key into the writable emptyDir next to
  config.toml, where gitlab-runner looks for it. The same Secret serves every replica; each reads its own key,
  so each replica is a distinct runner manager in GitLab and keeps its id across restarts. The old copy is removed
  first: after a container restart the emptyDir still holds it, and `cp` cannot overwrite a read-only file
  (the Secret's 0440 mode travels with the copy until the chmod). A missing key (the
  Secret not yet updated for a scale-up) fails the container loudly rather than letting gitlab-runner invent a
  random id that would leave a stale manager behind.
"""

# A fixed stand-in for the token when computing `token_free_sha256`.
TOKEN_PLACEHOLDER = "glrt-token-placeholder"

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SYSTEM_ID_LENGTH = 12


@dataclass(frozen=True)
class ChildNames:
    token_secret: str
    config_secret: str
    statefulset: str


def child_names(runner_name: str) -> ChildNames:
    """The names of the objects a `Runner` owns; the StatefulSet shares the Runner's name."""
    return ChildNames(
        token_secret=f"{runner_name}-runner-token",
        config_secret=f"{runner_name}-runner-config",
        statefulset=runner_name,
    )


def owner_reference(api_version: str, kind: str, name: str, uid: str) -> dict[str, Any]:
    """A controller owner reference: the garbage collector deletes the child with its owner."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def labels(runner_name: str) -> dict[str, str]:
    """The labels on every child of a `Runner` (and on its pods)."""
    return {
        LABEL_NAME: "gitlab-runner",
        LABEL_INSTANCE: runner_name,
        LABEL_MANAGED_BY: "glrt-operator",
        LABEL_RUNNER: runner_name,
    }


def selector_labels(runner_name: str) -> dict[str, str]:
    """The StatefulSet's selector: a subset of `labels()` that never changes for a given Runner."""
    return {LABEL_INSTANCE: runner_name, LABEL_RUNNER: runner_name}


def _metadata(name: str, namespace: str, owner: Mapping[str, Any], runner_name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": labels(runner_name),
        "ownerReferences": [dict(owner)],
    }


# --- system_id ------------------------------------------------------------------------------------------------


def system_id(runner_uid: str, ordinal: int) -> str:
    """The system_id of replica `ordinal` of the Runner with `runner_uid`.

    `"r_"` + 12 base62 characters of HMAC-SHA256(key=runner_uid, msg="replica-<ordinal>"): it matches gitlab-runner's
    `^[sr]_[0-9a-zA-Z]{12}$`, is the same on every call (so it survives pod and operator restarts), and differs
    between replicas and between Runners (a re-created Runner has a new uid, hence new managers). The 12 characters
    are the 12 least significant base62 digits of the digest read as a big-endian integer (uniform, unlike the
    most significant digit).
    """
    if not runner_uid:
        raise ValueError("runner_uid must not be empty")
    if ordinal < 0:
        raise ValueError(f"ordinal must be >= 0, got {ordinal}")
    digest = hmac.new(runner_uid.encode(), f"replica-{ordinal}".encode(), hashlib.sha256).digest()
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(_SYSTEM_ID_LENGTH):
        number, digit = divmod(number, len(_BASE62))
        chars.append(_BASE62[digit])
    return "r_" + "".join(chars)


# --- config.toml ----------------------------------------------------------------------------------------------


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


def _set_if(table: dict[str, Any], key: str, value: Any) -> None:
    """Write `key` only when `value` is set (not None, not empty)."""
    if value is None or (isinstance(value, str | list | tuple | dict) and not value):
        return
    table[key] = value


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
        # token whose token_expires_at is zero (reference 4.2). The operator owns rotation; a runner rotating on
        # its own would write the new token only to its local copy and revoke the one every other replica holds.
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


# --- Secrets --------------------------------------------------------------------------------------------------


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode("ascii")


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
    metadata = _metadata(name, namespace, owner, runner_name)
    annotations = {ANNOTATION_RUNNER_ID: str(runner_id), ANNOTATION_TOKEN_OBTAINED_AT: token_obtained_at}
    if token_expires_at:
        annotations[ANNOTATION_TOKEN_EXPIRES_AT] = token_expires_at
    metadata["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": TOKEN_SECRET_TYPE,
        "data": {TOKEN_KEY: _b64(token)},
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
) -> dict[str, Any]:
    """The Secret mounted into every manager pod: `config.toml` and `system-id-<N>` for N in range(replicas)."""
    if replicas < 0:
        raise ValueError(f"replicas must be >= 0, got {replicas}")
    metadata = _metadata(name, namespace, owner, runner_name)
    metadata["annotations"] = {
        ANNOTATION_CONFIG_SHA256: rendered.sha256,
        ANNOTATION_CONFIG_TOKEN_FREE_SHA256: rendered.token_free_sha256,
    }
    data = {CONFIG_KEY: _b64(rendered.text)}
    for ordinal in range(replicas):
        data[system_id_key(ordinal)] = _b64(system_id(runner_uid, ordinal) + "\n")
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque", "data": data}


# --- StatefulSet ----------------------------------------------------------------------------------------------


def _probe(period: int, failure_threshold: int, initial_delay: int) -> dict[str, Any]:
    # gitlab-runner's own HTTP server: alive as long as the process is, whatever GitLab's state.
    return {
        "httpGet": {"path": "/metrics", "port": METRICS_PORT_NAME, "scheme": "HTTP"},
        "initialDelaySeconds": initial_delay,
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failure_threshold,
        "successThreshold": 1,
    }


def _env(user_env: tuple[Mapping[str, Any], ...]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    env.extend(copy.deepcopy(dict(e)) for e in user_env if e.get("name") not in RESERVED_ENV)
    return env


def build_statefulset(
    spec: RunnerSpec,
    *,
    name: str,
    namespace: str,
    owner: dict[str, Any],
    config_secret: str,
    config_checksum: str,
    ca_secret_key: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The runner manager pods. `name` is the Runner's name (the StatefulSet shares it; see `child_names`).

    `config_checksum` goes into a pod template annotation, so pods roll exactly when it changes (pass
    `RenderedConfig.token_free_sha256` to keep token rotations restart-free). `ca_secret_key=(secret, key)`
    mounts that key at `CA_FILE`; render config.toml with `ca_path=CA_FILE` to match.
    """
    manager = spec.manager

    volumes: list[dict[str, Any]] = [
        {"name": "config", "secret": {"secretName": config_secret, "defaultMode": SECRET_VOLUME_MODE}},
        {"name": "etc", "emptyDir": {}},
        {"name": "home", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": SECRETS_MOUNT, "readOnly": True},
        {"name": "etc", "mountPath": CONFIG_DIR},
        {"name": "home", "mountPath": HOME_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if ca_secret_key is not None:
        ca_secret, ca_key = ca_secret_key
        volumes.append(
            {
                "name": "ca",
                "secret": {
                    "secretName": ca_secret,
                    "items": [{"key": ca_key, "path": "ca.crt"}],
                    "defaultMode": SECRET_VOLUME_MODE,
                },
            }
        )
        mounts.append({"name": "ca", "mountPath": CA_MOUNT, "readOnly": True})

    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": manager.image,
        "imagePullPolicy": manager.image_pull_policy,
        "command": ["/bin/sh", "-c", RUNNER_SCRIPT],
        "env": _env(manager.env),
        "ports": [{"name": METRICS_PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "livenessProbe": _probe(period=20, failure_threshold=3, initial_delay=15),
        "readinessProbe": _probe(period=10, failure_threshold=3, initial_delay=5),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    if manager.resources:
        container["resources"] = copy.deepcopy(dict(manager.resources))

    pod_spec: dict[str, Any] = {
        # The kubernetes executor talks to the API server to create job pods, so the token is always mounted.
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": spec.config.shutdown_timeout + 30,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_GROUP,
            "fsGroup": FS_GROUP,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    _set_if(pod_spec, "serviceAccountName", manager.service_account_name)
    _set_if(pod_spec, "imagePullSecrets", [{"name": s} for s in manager.image_pull_secrets])
    _set_if(pod_spec, "nodeSelector", {k: manager.node_selector[k] for k in sorted(manager.node_selector)})
    _set_if(pod_spec, "tolerations", [copy.deepcopy(dict(t)) for t in manager.tolerations])
    _set_if(pod_spec, "affinity", copy.deepcopy(dict(manager.affinity)))
    _set_if(pod_spec, "priorityClassName", manager.priority_class_name)

    # Ours last: a user's pod label or annotation can never break the selector or the checksum.
    pod_labels = {**manager.pod_labels, **labels(name)}
    pod_annotations = {
        **manager.pod_annotations,
        "kubectl.kubernetes.io/default-container": CONTAINER_NAME,
        ANNOTATION_CONFIG_CHECKSUM: config_checksum,
    }

    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(name, namespace, owner, name),
        "spec": {
            "replicas": spec.replicas,
            # Runner managers are independent; and OrderedReady would wait for pod N to be Ready before N+1.
            "podManagementPolicy": "Parallel",
            "serviceName": name,
            "selector": {"matchLabels": selector_labels(name)},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": pod_annotations},
                "spec": pod_spec,
            },
        },
    }
