"""`glrt-operator import-config`: an existing config.toml -> one Runner manifest per [[runners]] entry. Pure.

Dropped: what the operator owns (url, token, id, token times, name, listen_address, tls-ca-file) and plain-text
credentials (replaced by a `<key>SecretRef` to a Secret the user creates; the manifest says which). Several entries
for one GitLab (left by repeated `register` runs; URLs compared as GitLab reads them, so `https://g.example.com`
and `https://G.example.com:443/` are one) are all imported, each with a warning: they may differ on purpose (tags,
executors), and the ones GitLab no longer knows can only be told apart in GitLab, so nothing is merged. An executor
a manager pod cannot run as rendered (no Docker daemon, no hypervisor, no fleeting plugin or custom driver in the
image, jobs inside the manager pod itself) is imported with a warning saying what it needs.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from glrt_operator.core.api import RUNNER
from glrt_operator.runner_config.keys import (
    GLOBAL_SECTION,
    OWNED_GLOBAL,
    OWNED_RUNNER,
    SECRET_KEYS,
    Key,
    global_key,
    runner_key,
    spec_config_key,
)
from glrt_operator.runner_config.schema import SECRET_REF_SUFFIX


@dataclass(frozen=True)
class Imported:
    manifest: dict[str, Any]
    warnings: tuple[str, ...]


DEFAULT_PORTS = {"http": 80, "https": 443}
# What each executor of https://docs.gitlab.com/runner/executors/ needs that a manager pod (the gitlab-runner image,
# restricted, no daemon, nothing mounted but config.toml) lacks. kubernetes, the operator's default, needs nothing.
EXECUTOR_NEEDS = {
    "shell": "runs every job inside the manager pod itself (its image, its filesystem, beside the runner token), "
    "not in a pod of its own: use the kubernetes executor unless that is what you want",
    "docker": "needs a Docker daemon, which a manager pod does not have: set [runners.docker] host to one it can "
    "reach, or use the kubernetes executor",
    "docker-windows": "needs a Docker daemon on Windows; manager pods run Linux: use the kubernetes executor",
    "docker+machine": "needs docker-machine in the manager image and cloud credentials to create machines (and is "
    "deprecated for docker-autoscaler): use the kubernetes executor",
    "docker-autoscaler": "needs a fleeting plugin installed in the manager image ([runners.autoscaler] plugin) and "
    "cloud credentials: the operator provides neither",
    "instance": "needs a fleeting plugin installed in the manager image ([runners.autoscaler] plugin) and cloud "
    "credentials: the operator provides neither",
    "custom": "runs the driver executables of [runners.custom] (config_exec, prepare_exec, run_exec, cleanup_exec) "
    "inside the manager pod: they must be in the manager image (spec.manager.image)",
    "ssh": "runs jobs on the [runners.ssh] host: the manager pod must reach it, and an identity_file must be in the "
    "manager image (the operator mounts only config.toml)",
    "parallels": "needs Parallels on the machine that runs gitlab-runner; a manager pod has no hypervisor",
    "virtualbox": "needs VirtualBox on the machine that runs gitlab-runner; a manager pod has no hypervisor",
}


def gitlab_identity(url: str) -> str:
    """`url` as GitLab tells instances apart: the scheme and host case-insensitively, the port with its default
    filled in, the path (its relative URL root) without a trailing slash, no user info. A URL it cannot parse is
    compared as written."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return url
    if not parts.hostname:
        return url
    return f"{parts.scheme.lower()}://{parts.hostname.lower()}:{port}{parts.path.rstrip('/')}"


def executor_warning(entry: Mapping[str, Any], where: str) -> str | None:
    """What a manager pod lacks to run this entry's executor as rendered; None when it can."""
    executor = str(entry.get("executor") or "kubernetes")
    if executor == "kubernetes":
        return None
    docker = entry.get("docker")
    if executor == "docker" and isinstance(docker, Mapping) and docker.get("host"):
        return None  # a daemon elsewhere, reached over the network
    needs = EXECUTOR_NEEDS.get(executor, "is not an executor gitlab-runner knows")
    return f"{where}: executor {executor!r} {needs}"


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return slug[:50].strip("-") or "runner"


def _convert(key: Key, value: Any, path: tuple[str, ...], where: str, warnings: list[str]) -> Any:
    if key.kind == "object" and isinstance(value, Mapping):
        by_toml = {k.toml: (c, k) for c, k in key.fields.items()}
        out: dict[str, Any] = {}
        for toml_key, v in value.items():
            if toml_key not in by_toml:
                warnings.append(f"{where}.{toml_key}: gitlab-runner does not know this key (it was ignored); dropped")
                continue
            c, child = by_toml[toml_key]
            if (*path, toml_key) in SECRET_KEYS:
                if v:
                    warnings.append(
                        f"{where}.{toml_key}: a credential; create a Secret with it and fill in {c}{SECRET_REF_SUFFIX}"
                    )
                    out[f"{c}{SECRET_REF_SUFFIX}"] = {"name": "CHANGE-ME", "key": _slug(toml_key)}
                continue
            out[c] = _convert(child, v, (*path, toml_key), f"{where}.{toml_key}", warnings)
        return out
    if key.kind == "array" and isinstance(value, list):
        assert key.items is not None
        return [_convert(key.items, v, path, where, warnings) for v in value]
    if key.kind == "map" and isinstance(value, Mapping):
        assert key.values is not None
        return {k: _convert(key.values, v, path, where, warnings) for k, v in value.items()}
    if key.kind == "string-or-array" and isinstance(value, str):
        return [value]
    return value


def spec_config_from_toml(document: Mapping[str, Any], entry: Mapping[str, Any], warnings: list[str]) -> dict[str, Any]:
    """spec.config for one [[runners]] entry plus the global settings."""
    config: dict[str, Any] = {}
    glob = {k: v for k, v in document.items() if k not in OWNED_GLOBAL}
    if glob.get("check_interval") == 0:
        glob.pop("check_interval")  # gitlab-runner reads 0 as its default (3 s); the CRD asks for at least 1
    runner = {k: v for k, v in entry.items() if k not in OWNED_RUNNER}
    if runner.get("executor") == "kubernetes":
        runner.pop("executor")  # the operator's default
    spec_key = spec_config_key()
    collide = spec_key.fields[GLOBAL_SECTION].fields
    glob_colliding = {k: v for k, v in glob.items() if any(c.toml == k for c in collide.values())}
    config.update(_convert(global_key(), {k: v for k, v in glob.items() if k not in glob_colliding}, (), "", warnings))
    if glob_colliding:
        config[GLOBAL_SECTION] = _convert(spec_key.fields[GLOBAL_SECTION], glob_colliding, (), "", warnings)
    config.update(_convert(runner_key(), runner, (), "[[runners]]", warnings))
    return config


def import_config(document: Mapping[str, Any], namespace: str = "default") -> list[Imported]:
    entries = list(document.get("runners", []))
    urls = Counter(gitlab_identity(str(e.get("url", ""))) for e in entries)
    names: Counter[str] = Counter()
    out: list[Imported] = []
    for i, entry in enumerate(entries):
        warnings: list[str] = []
        url = str(entry.get("url", ""))
        if (same := urls[gitlab_identity(url)]) > 1:
            warnings.append(
                f"entry {i + 1} is one of {same} [[runners]] entries for the GitLab at {url} (repeated `register` "
                "runs?): apply only the ones you still use; each becomes a new runner in GitLab"
            )
        if (executor := executor_warning(entry, f"entry {i + 1}")) is not None:
            warnings.append(executor)
        base = _slug(str(entry.get("name") or f"runner-{i + 1}"))
        names[base] += 1
        name = base if names[base] == 1 else f"{base}-{names[base]}"
        config = spec_config_from_toml(document, entry, warnings)
        manifest = {
            "apiVersion": RUNNER.api_version,
            "kind": "Runner",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "gitlab": {"url": url, "credentialsSecretRef": {"name": "CHANGE-ME", "key": "token"}},
                "runnerType": "instance_type",
                "description": str(entry.get("name") or name),
                "config": config,
            },
        }
        out.append(Imported(manifest=manifest, warnings=tuple(warnings)))
    return out
