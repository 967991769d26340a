"""The typed, frozen view of a `Runner` spec.

The CRD schema refuses most bad input at `kubectl apply` time; `RunnerSpec.parse` checks the same rules again
(a test keeps both in step) so that a handler never works on a spec it does not understand, and so that objects
written before a schema change still get a clear message.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, cast

from ..core.connection import GitLabSpec, parse_gitlab
from ..core.spec import SpecError, get_field, parse_duration, str_map
from ..runner_config.validate import config_errors

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
MAX_INT32 = 2_147_483_647  # GitLab stores timeouts in 32-bit integer columns
MAX_ID = 2**53 - 1  # ids beyond this cannot travel through JSON numbers intact
# What GitLab strips from each tag (Gitlab::Ci::Tags::TagList#clean!, Ruby's String#strip): compare the same way,
# or every resync would see "drift" and PUT the same tags forever.
TAG_STRIP = " \t\n\v\f\r\0"
MAX_REPLICAS = 100

# Defaults live here, in this module, once: as dataclass field defaults or these constants. The parser reads them
# from there; the CRD repeats a default only where `kubectl explain` should show it, and a test fails when the two
# disagree (tests/unit/test_crd.py).
DEFAULT_RUNNER_IMAGE = "registry.gitlab.com/gitlab-org/gitlab-runner:v19.4.0"
DEFAULT_RENEW_BEFORE = timedelta(hours=72)
DEFAULT_REPLICAS = 1
# How long a stopping manager pod may wait for its running jobs (the official gitlab-runner chart's
# terminationGracePeriodSeconds: https://docs.gitlab.com/runner/install/kubernetes/).
DEFAULT_DRAIN_TIMEOUT = 3600


@dataclass(frozen=True)
class TokenRotation:
    requested_at: str | None = None
    renew_before: timedelta = DEFAULT_RENEW_BEFORE


@dataclass(frozen=True)
class RunnerConfig:
    """spec.config as the user wrote it: gitlab-runner's config.toml keys in camelCase (the global settings and the
    one `[[runners]]` entry), checked against the full key set of the pinned gitlab-runner (runner_config).

    Kept as a mapping, not fields: the builder renders every key it holds. `CONFIG_DEFAULTS` fill what is unset.
    """

    values: Mapping[str, Any] = field(default_factory=dict)

    def effective(self) -> dict[str, Any]:
        """The values with the operator's defaults under them (the user's keys win, tables merge)."""
        return _merged(CONFIG_DEFAULTS, self.values)

    @property
    def shutdown_timeout(self) -> int:
        value: int = self.effective()["shutdownTimeout"]
        return value


# The operator's defaults for spec.config, rendered unless the user sets the key (camelCase, as in spec.config).
# Not CRD defaults: they follow the operator release, and "unset" stays distinguishable from "set to the default".
CONFIG_DEFAULTS: Mapping[str, Any] = {
    "concurrent": 10,
    "checkInterval": 3,
    "logLevel": "info",
    "shutdownTimeout": 30,
    # gitlab-runner 19 logs "Long polling issues detected" on every load at 1
    # (https://docs.gitlab.com/runner/configuration/advanced-configuration/#the-runners-section).
    "requestConcurrency": 2,
    "limit": 0,
    "kubernetes": {"image": "alpine:3.20", "privileged": False},
}


def _merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        below = out.get(key)
        out[key] = _merged(below, value) if isinstance(below, Mapping) and isinstance(value, Mapping) else value
    return out


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
    # None: the operator's default (spread over nodes); () : none at all.
    topology_spread_constraints: tuple[Mapping[str, Any], ...] | None = None
    priority_class_name: str | None = None
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    env: tuple[Mapping[str, Any], ...] = ()
    # Seconds a stopping pod waits for its running jobs (graceful shutdown) before the forceful path.
    drain_timeout: int = DEFAULT_DRAIN_TIMEOUT


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


def _parse_settings(spec: Mapping[str, Any]) -> GitLabRunnerSettings:
    description = get_field(spec, "description", str, "spec", _SETTINGS.description)
    if len(description) > MAX_DESCRIPTION:
        raise SpecError(f"spec.description: at most {MAX_DESCRIPTION} characters")
    note = get_field(spec, "maintenanceNote", str, "spec", _SETTINGS.maintenance_note)
    if len(note) > MAX_MAINTENANCE_NOTE:
        raise SpecError(f"spec.maintenanceNote: at most {MAX_MAINTENANCE_NOTE} characters")
    raw_tags = get_field(spec, "tags", list, "spec", [])
    if not all(isinstance(t, str) and t.strip(TAG_STRIP) and "," not in t for t in raw_tags):
        raise SpecError("spec.tags: every tag must be a non-empty string without commas")
    tags = [t.strip(TAG_STRIP) for t in raw_tags]
    if len(set(tags)) > MAX_TAGS:
        raise SpecError(f"spec.tags: at most {MAX_TAGS} tags")
    run_untagged = get_field(spec, "runUntagged", bool, "spec", _SETTINGS.run_untagged)
    if not run_untagged and not tags:
        raise SpecError("spec.tags: must not be empty when spec.runUntagged is false (the runner could pick no job)")
    access_level = get_field(spec, "accessLevel", str, "spec", _SETTINGS.access_level)
    if access_level not in ACCESS_LEVELS:
        raise SpecError(f"spec.accessLevel: must be one of {', '.join(ACCESS_LEVELS)}")
    maximum_timeout = get_field(spec, "maximumTimeout", int, "spec")
    if maximum_timeout is not None and not MIN_MAXIMUM_TIMEOUT <= maximum_timeout <= MAX_INT32:
        raise SpecError(
            f"spec.maximumTimeout: between {MIN_MAXIMUM_TIMEOUT} (GitLab's minimum) and {MAX_INT32} seconds"
        )
    return GitLabRunnerSettings(
        description=description,
        tags=tuple(sorted(set(tags))),
        run_untagged=run_untagged,
        locked=get_field(spec, "locked", bool, "spec", _SETTINGS.locked),
        paused=get_field(spec, "paused", bool, "spec", _SETTINGS.paused),
        access_level=cast(AccessLevel, access_level),
        maximum_timeout=maximum_timeout,
        maintenance_note=note,
    )


def _parse_rotation(spec: Mapping[str, Any]) -> TokenRotation:
    rotation = get_field(spec, "tokenRotation", Mapping, "spec", {})
    requested_at = get_field(rotation, "requestedAt", str, "spec.tokenRotation")
    renew_before = get_field(rotation, "renewBefore", str, "spec.tokenRotation")
    return TokenRotation(
        requested_at=requested_at or None,
        renew_before=(
            parse_duration(renew_before, "spec.tokenRotation.renewBefore") if renew_before else _ROTATION.renew_before
        ),
    )


def _parse_manager(spec: Mapping[str, Any]) -> ManagerPod:
    path = "spec.manager"
    m = get_field(spec, "manager", Mapping, "spec", {})
    pull_secrets = get_field(m, "imagePullSecrets", list, path, [])
    return ManagerPod(
        image=get_field(m, "image", str, path, _MANAGER.image),
        image_pull_policy=get_field(m, "imagePullPolicy", str, path, _MANAGER.image_pull_policy),
        image_pull_secrets=tuple(str(s["name"]) if isinstance(s, Mapping) else str(s) for s in pull_secrets),
        service_account_name=get_field(m, "serviceAccountName", str, path),
        resources=dict(get_field(m, "resources", Mapping, path, {})),
        node_selector=str_map(m.get("nodeSelector"), f"{path}.nodeSelector"),
        tolerations=tuple(get_field(m, "tolerations", list, path, [])),
        affinity=dict(get_field(m, "affinity", Mapping, path, {})),
        topology_spread_constraints=(
            None
            if m.get("topologySpreadConstraints") is None
            else tuple(get_field(m, "topologySpreadConstraints", list, path, []))
        ),
        priority_class_name=get_field(m, "priorityClassName", str, path),
        pod_labels=str_map(m.get("podLabels"), f"{path}.podLabels"),
        pod_annotations=str_map(m.get("podAnnotations"), f"{path}.podAnnotations"),
        env=tuple(get_field(m, "env", list, path, [])),
        drain_timeout=get_field(m, "drainTimeout", int, path, _MANAGER.drain_timeout),
    )


def _parse_config(spec: Mapping[str, Any]) -> RunnerConfig:
    c = get_field(spec, "config", Mapping, "spec", {})
    errors = config_errors(dict(c))
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SpecError(f"{errors[0]}{more}")
    return RunnerConfig(values=copy.deepcopy(dict(c)))


def _parse_spec(spec: Mapping[str, Any]) -> RunnerSpec:
    runner_type = get_field(spec, "runnerType", str, "spec", "")
    if runner_type not in RUNNER_TYPES:
        raise SpecError(f"spec.runnerType: must be one of {', '.join(RUNNER_TYPES)}")
    project_id = get_field(spec, "projectId", int, "spec")
    group_id = get_field(spec, "groupId", int, "spec")
    for name, value in (("projectId", project_id), ("groupId", group_id)):
        if value is not None and not 1 <= value <= MAX_ID:
            raise SpecError(f"spec.{name}: between 1 and {MAX_ID}")
    if runner_type == "project_type" and project_id is None:
        raise SpecError("spec.projectId is required when spec.runnerType is project_type")
    if runner_type == "group_type" and group_id is None:
        raise SpecError("spec.groupId is required when spec.runnerType is group_type")
    if runner_type != "project_type" and project_id is not None:
        raise SpecError("spec.projectId is only allowed when spec.runnerType is project_type")
    if runner_type != "group_type" and group_id is not None:
        raise SpecError("spec.groupId is only allowed when spec.runnerType is group_type")
    replicas = get_field(spec, "replicas", int, "spec", DEFAULT_REPLICAS)
    if not 0 <= replicas <= MAX_REPLICAS:
        raise SpecError(f"spec.replicas: between 0 and {MAX_REPLICAS}")
    return RunnerSpec(
        gitlab=parse_gitlab(spec),
        runner_type=cast(RunnerType, runner_type),
        project_id=project_id,
        group_id=group_id,
        settings=_parse_settings(spec),
        replicas=replicas,
        token_rotation=_parse_rotation(spec),
        manager=_parse_manager(spec),
        config=_parse_config(spec),
    )
