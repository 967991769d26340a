"""The typed, frozen view of a `Runner` spec.

The CRD schema refuses most bad input at `kubectl apply` time; `RunnerSpec.parse` checks the same rules again
(a test keeps both in step) so that a handler never works on a spec it does not understand, and so that objects
written before a schema change still get a clear message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, cast

from ..core import durations

RunnerType = Literal["instance_type", "group_type", "project_type"]
AccessLevel = Literal["not_protected", "ref_protected"]
LogLevel = Literal["debug", "info", "warn", "error", "fatal", "panic"]

RUNNER_TYPES: tuple[RunnerType, ...] = ("instance_type", "group_type", "project_type")
ACCESS_LEVELS: tuple[AccessLevel, ...] = ("not_protected", "ref_protected")
LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warn", "error", "fatal", "panic")

# GitLab's own limits (https://docs.gitlab.com/api/users/#create-a-runner-linked-to-a-user). The operator appends
# an ownership marker of at most MARKER_RESERVE characters to the maintenance note, so the user's part is shorter
# than GitLab's 1024.
MAX_TAGS = 50
MAX_DESCRIPTION = 1024
MARKER_RESERVE = 124
MAX_MAINTENANCE_NOTE = 1024 - MARKER_RESERVE
MIN_MAXIMUM_TIMEOUT = 600
MAX_REPLICAS = 100

# Defaults live here, in this module, once: as dataclass field defaults or these constants. The parser reads them
# from there; the CRD repeats a default only where `kubectl explain` should show it, and a test fails when the two
# disagree (tests/unit/test_crd.py).
DEFAULT_RUNNER_IMAGE = "registry.gitlab.com/gitlab-org/gitlab-runner:v19.4.0"
DEFAULT_RENEW_BEFORE = timedelta(hours=72)
DEFAULT_REPLICAS = 1
DEFAULT_CREDENTIALS_KEY = "token"
DEFAULT_CA_KEY = "ca.crt"

_URL = re.compile(r"^https?://[^\s/]+(/[^\s]*)?$")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class SpecError(ValueError):
    """The spec cannot be acted on; the message says which field to fix and how."""


def parse_duration(value: str, field_name: str) -> timedelta:
    """Parse `72h`, `90m`, `1h30m`, `45s`; SpecError naming `field_name` otherwise."""
    try:
        return durations.parse_duration(value)
    except ValueError as exc:
        raise SpecError(f"{field_name}: {exc}") from None


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True)
class GitLabSpec:
    url: str
    credentials: SecretKeyRef
    ca: SecretKeyRef | None = None

    @property
    def api_url(self) -> str:
        return self.url.rstrip("/") + "/api/v4"


@dataclass(frozen=True)
class TokenRotation:
    requested_at: str | None = None
    renew_before: timedelta = DEFAULT_RENEW_BEFORE


@dataclass(frozen=True)
class KubernetesExecutor:
    """`[runners.kubernetes]`: where and how CI jobs run."""

    namespace: str | None = None
    image: str = "alpine:3.20"
    privileged: bool = False
    service_account: str | None = None
    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None
    helper_image: str | None = None
    pull_policy: tuple[str, ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    poll_timeout: int | None = None
    # Secrets (e.g. a DeployToken's dockerconfigjson) job pods pull their images with: `image_pull_secrets`.
    image_pull_secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class CacheSpec:
    """`[runners.cache]`; credentials stay out of config.toml (they come from the pod's environment)."""

    type: Literal["s3", "gcs", "azure"]
    path: str | None = None
    shared: bool = False
    s3_server_address: str | None = None
    s3_bucket_name: str | None = None
    s3_bucket_location: str | None = None
    s3_insecure: bool = False
    gcs_bucket_name: str | None = None
    azure_container_name: str | None = None


@dataclass(frozen=True)
class RunnerConfig:
    """gitlab-runner's config.toml settings (https://docs.gitlab.com/runner/configuration/advanced-configuration/)."""

    concurrent: int = 10
    check_interval: int = 3
    log_level: LogLevel = "info"
    shutdown_timeout: int = 30
    request_concurrency: int = 1
    limit: int = 0
    output_limit: int | None = None
    environment: tuple[str, ...] = ()
    feature_flags: Mapping[str, bool] = field(default_factory=dict)
    kubernetes: KubernetesExecutor = field(default_factory=KubernetesExecutor)
    cache: CacheSpec | None = None


@dataclass(frozen=True)
class ManagerPod:
    """The runner manager pods (the StatefulSet the operator owns)."""

    image: str = DEFAULT_RUNNER_IMAGE
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    service_account_name: str | None = None
    resources: Mapping[str, Any] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] = field(default_factory=dict)
    priority_class_name: str | None = None
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    env: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class GitLabRunnerSettings:
    """The attributes GitLab stores on the runner itself: sent on create, compared and PUT on drift."""

    description: str = ""
    tags: tuple[str, ...] = ()
    run_untagged: bool = True
    locked: bool = False
    paused: bool = False
    access_level: AccessLevel = "not_protected"
    maximum_timeout: int | None = None
    maintenance_note: str = ""


@dataclass(frozen=True)
class RunnerSpec:
    gitlab: GitLabSpec
    runner_type: RunnerType
    project_id: int | None
    group_id: int | None
    settings: GitLabRunnerSettings
    replicas: int
    token_rotation: TokenRotation
    manager: ManagerPod
    config: RunnerConfig

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> RunnerSpec:
        """Build the model from `body["spec"]`, or raise SpecError naming the field to fix."""
        return _parse_spec(spec)


# --- parsing --------------------------------------------------------------------------------------------------

# The defaults of each part, read by the parser (never written again as literals).
_SETTINGS = GitLabRunnerSettings()
_ROTATION = TokenRotation()
_MANAGER = ManagerPod()
_EXECUTOR = KubernetesExecutor()
_CONFIG = RunnerConfig()


def _get(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: str, default: Any = None) -> Any:
    value = obj.get(key, default)
    if value is None:
        return default
    # bool is an int in Python; never accept True where a number is asked for.
    if isinstance(value, bool) and kind in (int, (int,)):
        raise SpecError(f"{path}.{key}: expected a number, got {value!r}")
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise SpecError(f"{path}.{key}: expected {expected}, got {type(value).__name__}")
    return value


def _str_map(value: Any, path: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise SpecError(f"{path}: expected a map of strings")
    return {str(k): v for k, v in value.items()}


def _secret_ref(obj: Mapping[str, Any], key: str, path: str, default_key: str) -> SecretKeyRef | None:
    ref = _get(obj, key, Mapping, path)
    if ref is None:
        return None
    name = _get(ref, "name", str, f"{path}.{key}", "")
    if not _K8S_NAME.match(name):
        raise SpecError(f"{path}.{key}.name: {name!r} is not a Secret name")
    return SecretKeyRef(name=name, key=_get(ref, "key", str, f"{path}.{key}", default_key))


def _parse_gitlab(spec: Mapping[str, Any]) -> GitLabSpec:
    gitlab = _get(spec, "gitlab", Mapping, "spec")
    if gitlab is None:
        raise SpecError("spec.gitlab is required: set spec.gitlab.url and spec.gitlab.credentialsSecretRef")
    url = _get(gitlab, "url", str, "spec.gitlab", "")
    if not _URL.match(url):
        raise SpecError(f"spec.gitlab.url: {url!r} is not an http(s) URL like https://gitlab.example.com")
    credentials = _secret_ref(gitlab, "credentialsSecretRef", "spec.gitlab", DEFAULT_CREDENTIALS_KEY)
    if credentials is None:
        raise SpecError("spec.gitlab.credentialsSecretRef is required: name the Secret holding the access token")
    return GitLabSpec(
        url=url, credentials=credentials, ca=_secret_ref(gitlab, "caSecretRef", "spec.gitlab", DEFAULT_CA_KEY)
    )


def _parse_settings(spec: Mapping[str, Any]) -> GitLabRunnerSettings:
    description = _get(spec, "description", str, "spec", _SETTINGS.description)
    if len(description) > MAX_DESCRIPTION:
        raise SpecError(f"spec.description: at most {MAX_DESCRIPTION} characters")
    note = _get(spec, "maintenanceNote", str, "spec", _SETTINGS.maintenance_note)
    if len(note) > MAX_MAINTENANCE_NOTE:
        raise SpecError(f"spec.maintenanceNote: at most {MAX_MAINTENANCE_NOTE} characters")
    tags = _get(spec, "tags", list, "spec", [])
    if not all(isinstance(t, str) and t.strip() and "," not in t for t in tags):
        raise SpecError("spec.tags: every tag must be a non-empty string without commas")
    if len(set(tags)) > MAX_TAGS:
        raise SpecError(f"spec.tags: at most {MAX_TAGS} tags")
    run_untagged = _get(spec, "runUntagged", bool, "spec", _SETTINGS.run_untagged)
    if not run_untagged and not tags:
        raise SpecError("spec.tags: must not be empty when spec.runUntagged is false (the runner could pick no job)")
    access_level = _get(spec, "accessLevel", str, "spec", _SETTINGS.access_level)
    if access_level not in ACCESS_LEVELS:
        raise SpecError(f"spec.accessLevel: must be one of {', '.join(ACCESS_LEVELS)}")
    maximum_timeout = _get(spec, "maximumTimeout", int, "spec")
    if maximum_timeout is not None and maximum_timeout < MIN_MAXIMUM_TIMEOUT:
        raise SpecError(f"spec.maximumTimeout: at least {MIN_MAXIMUM_TIMEOUT} seconds (GitLab's minimum)")
    return GitLabRunnerSettings(
        description=description,
        tags=tuple(sorted(set(tags))),
        run_untagged=run_untagged,
        locked=_get(spec, "locked", bool, "spec", _SETTINGS.locked),
        paused=_get(spec, "paused", bool, "spec", _SETTINGS.paused),
        access_level=cast(AccessLevel, access_level),
        maximum_timeout=maximum_timeout,
        maintenance_note=note,
    )


def _parse_rotation(spec: Mapping[str, Any]) -> TokenRotation:
    rotation = _get(spec, "tokenRotation", Mapping, "spec", {})
    requested_at = _get(rotation, "requestedAt", str, "spec.tokenRotation")
    renew_before = _get(rotation, "renewBefore", str, "spec.tokenRotation")
    return TokenRotation(
        requested_at=requested_at or None,
        renew_before=(
            parse_duration(renew_before, "spec.tokenRotation.renewBefore") if renew_before else _ROTATION.renew_before
        ),
    )


def _parse_manager(spec: Mapping[str, Any]) -> ManagerPod:
    path = "spec.manager"
    m = _get(spec, "manager", Mapping, "spec", {})
    pull_secrets = _get(m, "imagePullSecrets", list, path, [])
    return ManagerPod(
        image=_get(m, "image", str, path, _MANAGER.image),
        image_pull_policy=_get(m, "imagePullPolicy", str, path, _MANAGER.image_pull_policy),
        image_pull_secrets=tuple(str(s["name"]) if isinstance(s, Mapping) else str(s) for s in pull_secrets),
        service_account_name=_get(m, "serviceAccountName", str, path),
        resources=dict(_get(m, "resources", Mapping, path, {})),
        node_selector=_str_map(m.get("nodeSelector"), f"{path}.nodeSelector"),
        tolerations=tuple(_get(m, "tolerations", list, path, [])),
        affinity=dict(_get(m, "affinity", Mapping, path, {})),
        priority_class_name=_get(m, "priorityClassName", str, path),
        pod_labels=_str_map(m.get("podLabels"), f"{path}.podLabels"),
        pod_annotations=_str_map(m.get("podAnnotations"), f"{path}.podAnnotations"),
        env=tuple(_get(m, "env", list, path, [])),
    )


def _parse_executor(config: Mapping[str, Any]) -> KubernetesExecutor:
    path = "spec.config.kubernetes"
    k = _get(config, "kubernetes", Mapping, "spec.config", {})
    pull_policy = _get(k, "pullPolicy", (str, list), path, [])
    return KubernetesExecutor(
        namespace=_get(k, "namespace", str, path),
        image=_get(k, "image", str, path, _EXECUTOR.image),
        privileged=_get(k, "privileged", bool, path, _EXECUTOR.privileged),
        service_account=_get(k, "serviceAccount", str, path),
        cpu_request=_get(k, "cpuRequest", str, path),
        cpu_limit=_get(k, "cpuLimit", str, path),
        memory_request=_get(k, "memoryRequest", str, path),
        memory_limit=_get(k, "memoryLimit", str, path),
        helper_image=_get(k, "helperImage", str, path),
        pull_policy=(pull_policy,) if isinstance(pull_policy, str) else tuple(pull_policy),
        node_selector=_str_map(k.get("nodeSelector"), f"{path}.nodeSelector"),
        poll_timeout=_get(k, "pollTimeout", int, path),
        image_pull_secrets=_names(_get(k, "imagePullSecrets", list, path, []), f"{path}.imagePullSecrets"),
    )


def _names(values: list[Any], path: str) -> tuple[str, ...]:
    """Secret names (strings, as gitlab-runner's image_pull_secrets takes them)."""
    for value in values:
        if not isinstance(value, str) or not _K8S_NAME.match(value):
            raise SpecError(f"{path}: {value!r} is not a Secret name")
    return tuple(values)


def _parse_cache(config: Mapping[str, Any]) -> CacheSpec | None:
    path = "spec.config.cache"
    c = _get(config, "cache", Mapping, "spec.config")
    if c is None:
        return None
    cache_type = _get(c, "type", str, path, "")
    if cache_type not in ("s3", "gcs", "azure"):
        raise SpecError(f"{path}.type: must be one of s3, gcs, azure")
    s3 = _get(c, "s3", Mapping, path, {})
    gcs = _get(c, "gcs", Mapping, path, {})
    azure = _get(c, "azure", Mapping, path, {})
    return CacheSpec(
        type=cast(Literal["s3", "gcs", "azure"], cache_type),
        path=_get(c, "path", str, path),
        shared=_get(c, "shared", bool, path, CacheSpec.shared),
        s3_server_address=_get(s3, "serverAddress", str, f"{path}.s3"),
        s3_bucket_name=_get(s3, "bucketName", str, f"{path}.s3"),
        s3_bucket_location=_get(s3, "bucketLocation", str, f"{path}.s3"),
        s3_insecure=_get(s3, "insecure", bool, f"{path}.s3", CacheSpec.s3_insecure),
        gcs_bucket_name=_get(gcs, "bucketName", str, f"{path}.gcs"),
        azure_container_name=_get(azure, "containerName", str, f"{path}.azure"),
    )


def _parse_config(spec: Mapping[str, Any]) -> RunnerConfig:
    path = "spec.config"
    c = _get(spec, "config", Mapping, "spec", {})
    concurrent = _get(c, "concurrent", int, path, _CONFIG.concurrent)
    if concurrent < 1:
        raise SpecError(f"{path}.concurrent: at least 1 (gitlab-runner refuses 0)")
    log_level = _get(c, "logLevel", str, path, _CONFIG.log_level)
    if log_level not in LOG_LEVELS:
        raise SpecError(f"{path}.logLevel: must be one of {', '.join(LOG_LEVELS)}")
    environment = _get(c, "environment", list, path, [])
    if not all(isinstance(e, str) and "=" in e for e in environment):
        raise SpecError(f"{path}.environment: every entry must look like NAME=value")
    flags = _get(c, "featureFlags", Mapping, path, {})
    if not all(isinstance(v, bool) for v in flags.values()):
        raise SpecError(f"{path}.featureFlags: every value must be true or false")
    return RunnerConfig(
        concurrent=concurrent,
        check_interval=_get(c, "checkInterval", int, path, _CONFIG.check_interval),
        log_level=cast(LogLevel, log_level),
        shutdown_timeout=_get(c, "shutdownTimeout", int, path, _CONFIG.shutdown_timeout),
        request_concurrency=_get(c, "requestConcurrency", int, path, _CONFIG.request_concurrency),
        limit=_get(c, "limit", int, path, _CONFIG.limit),
        output_limit=_get(c, "outputLimit", int, path),
        environment=tuple(environment),
        feature_flags={str(k): v for k, v in flags.items()},
        kubernetes=_parse_executor(c),
        cache=_parse_cache(c),
    )


def _parse_spec(spec: Mapping[str, Any]) -> RunnerSpec:
    runner_type = _get(spec, "runnerType", str, "spec", "")
    if runner_type not in RUNNER_TYPES:
        raise SpecError(f"spec.runnerType: must be one of {', '.join(RUNNER_TYPES)}")
    project_id = _get(spec, "projectId", int, "spec")
    group_id = _get(spec, "groupId", int, "spec")
    if runner_type == "project_type" and project_id is None:
        raise SpecError("spec.projectId is required when spec.runnerType is project_type")
    if runner_type == "group_type" and group_id is None:
        raise SpecError("spec.groupId is required when spec.runnerType is group_type")
    if runner_type != "project_type" and project_id is not None:
        raise SpecError("spec.projectId is only allowed when spec.runnerType is project_type")
    if runner_type != "group_type" and group_id is not None:
        raise SpecError("spec.groupId is only allowed when spec.runnerType is group_type")
    replicas = _get(spec, "replicas", int, "spec", DEFAULT_REPLICAS)
    if not 0 <= replicas <= MAX_REPLICAS:
        raise SpecError(f"spec.replicas: between 0 and {MAX_REPLICAS}")
    return RunnerSpec(
        gitlab=_parse_gitlab(spec),
        runner_type=cast(RunnerType, runner_type),
        project_id=project_id,
        group_id=group_id,
        settings=_parse_settings(spec),
        replicas=replicas,
        token_rotation=_parse_rotation(spec),
        manager=_parse_manager(spec),
        config=_parse_config(spec),
    )
