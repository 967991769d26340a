"""Which Secret references in spec.config become what in the manager pod. Pure: the StatefulSet builder calls it.

gitlab-runner's `run` reads credentials only from config.toml (the CACHE_* environment names in its source feed
`register`, not `run`), so a credential reaches it in one of two ways:
- a file setting (GCS CredentialsFile): the Secret key is mounted read-only and config.toml gets the path;
- any other credential: the operator reads the Secret and writes the value into config.toml, which already lives in
  a Secret (it holds the runner token). The Runner object itself only ever holds the reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from glrt_operator.runner_config.keys import SECRET_KEYS, runner_key
from glrt_operator.runner_config.schema import SECRET_REF_SUFFIX

TomlPath = tuple[str, ...]
FILE_KEYS: frozenset[TomlPath] = frozenset({("cache", "gcs", "CredentialsFile")})
CREDENTIALS_MOUNT = "/etc/gitlab-runner-credentials"


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str
    # Where the reference sits in the Runner (for messages), e.g. spec.config.cache.s3.accessKeySecretRef.
    source: str = field(default="", compare=False)


@dataclass(frozen=True)
class CredentialPlan:
    """`inline`: TOML path -> Secret key to read and write into config.toml; the rest goes into the pod spec."""

    inline: dict[TomlPath, SecretRef] = field(default_factory=dict)
    files: dict[TomlPath, str] = field(default_factory=dict)  # TOML path -> path of the mounted file
    file_refs: dict[TomlPath, SecretRef] = field(default_factory=dict)  # TOML path -> the Secret key mounted there
    volumes: list[dict[str, Any]] = field(default_factory=list)
    volume_mounts: list[dict[str, Any]] = field(default_factory=list)


def _refs(obj: Mapping[str, Any], toml_path: TomlPath, path: str, out: dict[TomlPath, SecretRef]) -> None:
    key = runner_key()
    for part in toml_path:
        key = next(k for k in key.fields.values() if k.toml == part)
    for name, value in obj.items():
        if name.endswith(SECRET_REF_SUFFIX) and name[: -len(SECRET_REF_SUFFIX)] in key.fields:
            child = key.fields[name[: -len(SECRET_REF_SUFFIX)]]
            ref = SecretRef(name=str(value["name"]), key=str(value["key"]), source=f"{path}.{name}")
            out[(*toml_path, child.toml)] = ref
        elif name in key.fields and isinstance(value, Mapping) and key.fields[name].kind == "object":
            _refs(value, (*toml_path, key.fields[name].toml), f"{path}.{name}", out)


def secret_refs(config: Mapping[str, Any]) -> dict[TomlPath, SecretRef]:
    """Every `<key>SecretRef` in spec.config, by the [[runners]]-relative TOML path of the credential it fills."""
    out: dict[TomlPath, SecretRef] = {}
    _refs(config, (), "spec.config", out)
    unknown = set(out) - SECRET_KEYS
    assert not unknown, unknown
    return out


def credential_plan(config: Mapping[str, Any]) -> CredentialPlan:
    plan = CredentialPlan()
    for i, (path, ref) in enumerate(sorted(secret_refs(config).items())):
        if path not in FILE_KEYS:
            plan.inline[path] = ref
            continue
        volume = f"credential-{i}"
        mount = f"{CREDENTIALS_MOUNT}/{'-'.join(path).lower()}"
        # 0440 like the operator's other Secret volumes: the runner (uid 100) reads it through fsGroup.
        plan.volumes.append(
            {
                "name": volume,
                "secret": {"secretName": ref.name, "items": [{"key": ref.key, "path": "value"}], "defaultMode": 0o440},
            }
        )
        plan.volume_mounts.append({"name": volume, "mountPath": mount, "readOnly": True})
        plan.files[path] = f"{mount}/value"
        plan.file_refs[path] = ref
    return plan


def resolved_credentials(plan: CredentialPlan, secret_data: Mapping[SecretRef, str]) -> dict[TomlPath, str]:
    """The `credentials` argument of render_document: file paths plus the inline values read from the Secrets."""
    out = dict(plan.files)
    for path, ref in plan.inline.items():
        out[path] = secret_data[ref]
    return out
