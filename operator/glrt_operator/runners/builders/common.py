"""Names, labels, annotations and the manager pod's layout shared by the builders, and the per-replica system_id.

Pure: no I/O, no client. The children of a `Runner` named `<name>`:

- Secret `<name>-runner-token` (type `glrt.dev/runner-token`): the `glrt-` token, key `token`.
- Secret `<name>-runner-config`: `config.toml` and one `system-id-<N>` key per replica.
- StatefulSet `<name>`: the runner manager pods `<name>-0`, `<name>-1`, ...; pod N copies `system-id-N` into
  `.runner_system_id` next to config.toml, so every replica is its own, stable GitLab runner manager.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...core.objects import LABEL_INSTANCE, is_dns_label, labels_of

# --- names, labels, annotations ------------------------------------------------------------------------------

LABEL_RUNNER = "glrt.dev/runner"

ANNOTATION_RUNNER_ID = "glrt.dev/runner-id"
ANNOTATION_TOKEN_EXPIRES_AT = "glrt.dev/token-expires-at"
ANNOTATION_TOKEN_OBTAINED_AT = "glrt.dev/token-obtained-at"
ANNOTATION_CONFIG_SHA256 = "glrt.dev/config-sha256"
ANNOTATION_CONFIG_TOKEN_FREE_SHA256 = "glrt.dev/config-token-free-sha256"
ANNOTATION_CONFIG_CHECKSUM = "glrt.dev/config-checksum"
# On manager pods (not the template): the config Secret's resourceVersion the pod was last told about.
ANNOTATION_CONFIG_VERSION = "glrt.dev/config-secret-version"

TOKEN_SECRET_TYPE = "glrt.dev/runner-token"
TOKEN_KEY = "token"
CONFIG_KEY = "config.toml"
# In the config Secret when GitLab's CA lives in another namespace (a ClusterGitLabConnection's): a copy the manager
# pods can mount, since a pod mounts Secrets of its own namespace only.
CA_COPY_KEY = "gitlab-ca.crt"
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


def drain_script(timeout: int) -> str:
    """The manager container's preStop hook: a graceful shutdown of gitlab-runner, waited for up to `timeout`
    seconds.

    Kubernetes stops a container with SIGTERM, which makes gitlab-runner abort its running jobs; only SIGQUIT makes
    it stop requesting jobs and wait for the running ones (https://docs.gitlab.com/runner/commands/#signals).
    gitlab-runner is PID 1 (the start script `exec`s it). The kubelet sends SIGTERM once this hook returns: when
    the runner exited, nothing is left to stop; after `timeout` it is the forceful path, with the rest of the grace
    period (`shutdown_timeout`) for the runner to report the aborted jobs. A wall-clock deadline, not a count of
    `sleep 1`, so the wait does not stretch with the cost of each loop.
    """
    return f"""\
kill -QUIT 1 2>/dev/null || exit 0
end=$(( $(date +%s) + {int(timeout)} ))
while kill -0 1 2>/dev/null && [ "$(date +%s)" -lt "$end" ]; do sleep 1; done
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
    # The manager pods' ServiceAccount (unless spec.manager.serviceAccountName names the user's own) and their
    # PodDisruptionBudget.
    service_account: str
    disruption_budget: str


def child_names(runner_name: str) -> ChildNames:
    """The names of the objects a `Runner` owns; the StatefulSet shares the Runner's name."""
    return ChildNames(
        token_secret=f"{runner_name}-runner-token",
        config_secret=f"{runner_name}-runner-config",
        statefulset=runner_name,
        service_account=f"{runner_name}-runner",
        disruption_budget=runner_name,
    )


# A StatefulSet's name is a DNS label (RFC 1123: lowercase alphanumerics and '-', no dot), and its controller labels
# every pod with `controller-revision-hash: <name>-<hash of up to 10 characters>`, a label value of at most 63
# characters: 63 - 11 = 52. Pods `<name>-<ordinal>` (ordinal < 100) and the Secrets `<name>-runner-*` then fit too.
MAX_RUNNER_NAME = 52


def child_name_problem(runner_name: str) -> str | None:
    """Why `runner_name` cannot name the objects a Runner owns (and label them), or None when it can."""
    if len(runner_name) > MAX_RUNNER_NAME:
        return (
            f"at most {MAX_RUNNER_NAME} characters (it names the StatefulSet, whose pods carry a "
            "'<name>-<hash>' label of at most 63); create the Runner under a shorter name"
        )
    if not is_dns_label(runner_name):
        return (
            "must be lowercase letters, digits and '-' (no dot), starting and ending with a letter or digit: it "
            "names the StatefulSet (an RFC 1123 label); create the Runner under such a name"
        )
    return None


def labels(runner_name: str) -> dict[str, str]:
    """The labels on every child of a `Runner` (and on its pods)."""
    return labels_of("gitlab-runner", runner_name, LABEL_RUNNER)


def selector_labels(runner_name: str) -> dict[str, str]:
    """The StatefulSet's selector: a subset of `labels()` that never changes for a given Runner."""
    return {LABEL_INSTANCE: runner_name, LABEL_RUNNER: runner_name}


def child_metadata(name: str, namespace: str, owner: Mapping[str, Any], runner_name: str) -> dict[str, Any]:
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


def _set_if(table: dict[str, Any], key: str, value: Any) -> None:
    """Write `key` only when `value` is set (not None, not empty)."""
    if value is None or (isinstance(value, str | list | tuple | dict) and not value):
        return
    table[key] = value
