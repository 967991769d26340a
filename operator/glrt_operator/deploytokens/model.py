"""The typed, frozen view of a `DeployToken` spec.

The CRD schema refuses most bad input at apply time; `DeployTokenSpec.parse` checks the same rules again so a
handler never acts on a spec it does not understand. Errors are `SpecError`s: permanent, fixed by editing the spec.
Durations use the same syntax as the Runner's `renewBefore` (72h, 90m, 1h30m): no days, as in Go and Kubernetes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, cast

from ..core.connection import GitLabSpec, parse_gitlab
from ..core.objects import is_dns_label, is_subdomain_name
from ..core.spec import SpecError, duration, get_field

Scope = Literal["read_repository", "read_registry", "write_registry", "read_package_registry", "write_package_registry"]
SecretType = Literal["kubernetes.io/dockerconfigjson", "kubernetes.io/basic-auth"]

SCOPES: tuple[Scope, ...] = (
    "read_repository",
    "read_registry",
    "write_registry",
    "read_package_registry",
    "write_package_registry",
)
SECRET_TYPES: tuple[SecretType, ...] = ("kubernetes.io/dockerconfigjson", "kubernetes.io/basic-auth")
DOCKERCONFIGJSON: SecretType = "kubernetes.io/dockerconfigjson"

DEFAULT_VALID_FOR = timedelta(hours=720)
DEFAULT_RENEW_BEFORE = timedelta(hours=168)
# How long a superseded token stays valid after the Secret got its successor: pods and kubelets that read the
# Secret earlier (mounted Secrets refresh within about a minute) keep pulling meanwhile.
DEFAULT_GRACE_PERIOD = timedelta(minutes=10)
# GitLab accepts letters, digits, '_', '-', '+', '.' and at most 255 characters in a deploy token's username.
USERNAME_RE = re.compile(r"^[a-zA-Z0-9_+.-]{1,255}$")
# A registry host with an optional port, as .dockerconfigjson keys it (no scheme, no path).
_REGISTRY = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$")


@dataclass(frozen=True)
class SecretSpec:
    name: str
    type: SecretType
    registry: str | None
    # Other namespaces that get a copy of the Secret, kept current (e.g. a Runner's executor namespace, for job
    # pods' imagePullSecrets); each must accept this namespace (core.namespaces).
    copy_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeployTokenSpec:
    gitlab: GitLabSpec
    project_id: int | None
    group_id: int | None
    scopes: tuple[Scope, ...]
    username: str | None
    valid_for: timedelta
    renew_before: timedelta
    secret: SecretSpec
    grace_period: timedelta = DEFAULT_GRACE_PERIOD

    @property
    def scope_path(self) -> str:
        """The REST collection of the tokens: ``projects/7`` or ``groups/42``."""
        return f"projects/{self.project_id}" if self.project_id is not None else f"groups/{self.group_id}"

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> DeployTokenSpec:
        """Validate and type a `DeployToken` spec; raises `SpecError` naming the field to fix."""
        project_id = get_field(spec, "projectId", int, "spec")
        group_id = get_field(spec, "groupId", int, "spec")
        if (project_id is None) == (group_id is None):
            raise SpecError("spec: set exactly one of projectId and groupId")
        for name, value in (("projectId", project_id), ("groupId", group_id)):
            if value is not None and value < 1:
                raise SpecError(f"spec.{name}: must be a positive GitLab id")
        scopes = get_field(spec, "scopes", list, "spec", [])
        if not scopes or any(s not in SCOPES for s in scopes):
            raise SpecError(f"spec.scopes: one or more of {', '.join(SCOPES)}")
        username = get_field(spec, "username", str, "spec", "") or None
        if username is not None and not USERNAME_RE.match(username):
            raise SpecError("spec.username: letters, digits, '_', '-', '+' and '.' only, at most 255 characters")
        valid_for = duration(spec, "validFor", "spec", DEFAULT_VALID_FOR)
        renew_before = duration(spec, "renewBefore", "spec", DEFAULT_RENEW_BEFORE)
        if valid_for <= renew_before:
            raise SpecError("spec.validFor must be longer than spec.renewBefore")
        return cls(
            gitlab=parse_gitlab(spec),
            project_id=project_id,
            group_id=group_id,
            scopes=tuple(s for s in SCOPES if s in scopes),
            username=username,
            valid_for=valid_for,
            renew_before=renew_before,
            secret=_parse_secret(spec),
            grace_period=duration(spec, "gracePeriod", "spec", DEFAULT_GRACE_PERIOD, allow_zero=True),
        )


def _parse_secret(spec: Mapping[str, Any]) -> SecretSpec:
    secret = get_field(spec, "secret", Mapping, "spec")
    if secret is None:
        raise SpecError("spec.secret is required (name, type, registry)")
    name = get_field(secret, "name", str, "spec.secret", "")
    if not is_subdomain_name(name):
        raise SpecError("spec.secret.name: a DNS subdomain name (lower case, digits, '-', '.')")
    secret_type = get_field(secret, "type", str, "spec.secret", DOCKERCONFIGJSON)
    if secret_type not in SECRET_TYPES:
        raise SpecError(f"spec.secret.type: one of {', '.join(SECRET_TYPES)}")
    registry = get_field(secret, "registry", str, "spec.secret", "") or None
    if secret_type == DOCKERCONFIGJSON and registry is None:
        raise SpecError("spec.secret.registry is required for kubernetes.io/dockerconfigjson")
    if registry is not None and not _REGISTRY.match(registry):
        raise SpecError("spec.secret.registry: a host name with an optional port, e.g. registry.example.com:5050")
    copy_to = get_field(secret, "copyTo", list, "spec.secret", [])
    if not all(isinstance(ns, str) and is_dns_label(ns) for ns in copy_to) or len(set(copy_to)) != len(copy_to):
        raise SpecError("spec.secret.copyTo: distinct namespace names")
    return SecretSpec(name=name, type=cast(SecretType, secret_type), registry=registry, copy_to=tuple(sorted(copy_to)))
