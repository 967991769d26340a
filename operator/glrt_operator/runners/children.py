"""The Kubernetes objects a `Runner` owns besides its token Secret: the config Secret (config.toml and the
replicas' system_ids) and the StatefulSet of manager pods, built by the pure builders and server-side applied only
when what is there differs (`core.applied`): a resync at rest writes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core import connection
from ..core.applied import child_current, secret_current, stamped
from ..core.ports import PodInfo
from ..runner_config.credentials import TomlPath
from . import builders
from .context import RunnerContext
from .replicas import pods_to_refresh


@dataclass(frozen=True)
class Children:
    """The manager pods as found after the apply, and the StatefulSet's ready replicas."""

    pods: list[PodInfo]
    ready_replicas: int


def apply_children(
    ctx: RunnerContext, runner_id: int, token: str, credentials: Mapping[TomlPath, str] | None = None
) -> Children:
    """Apply the config Secret and the StatefulSet where they differ from what is there.

    `credentials`: what `credentials.config_credentials` read for spec.config's Secret references."""
    ref, spec = ctx.ref, ctx.spec
    names = ref.children
    ca_key = _ca_source(ctx)
    copied = ca_key is not None and ca_key == (names.config_secret, builders.CA_COPY_KEY)
    rendered = builders.render_config_toml(
        spec,
        runner_name=ref.name,
        runner_id=runner_id,
        token=token,
        ca_path=builders.CA_FILE if ca_key else None,
        default_namespace=ref.namespace,
        credentials=credentials,
    )
    secret = stamped(
        builders.build_config_secret(
            name=names.config_secret,
            namespace=ref.namespace,
            owner=ref.owner(),
            runner_name=ref.name,
            runner_uid=ref.uid,
            replicas=spec.replicas,
            rendered=rendered,
            ca_copy=connection.read_ca(ctx.kube, ref.namespace, spec.gitlab) if copied else None,
        )
    )
    found = ctx.kube.read_secret(ref.namespace, names.config_secret)
    if found is not None and secret_current(secret, found):
        config_version, written = found.resource_version, False
    else:
        config_version, written = ctx.kube.apply_secret(secret), True
    statefulset = stamped(_statefulset(ctx, rendered.token_free_sha256))
    existing = ctx.kube.read_child("StatefulSet", ref.namespace, names.statefulset)
    if not child_current(statefulset, existing):
        ctx.kube.apply_statefulset(statefulset)
    # A StatefulSet just created has no pods yet: no list (which the apiserver answers by scanning every pod of the
    # namespace, a fleet's thousands at its creation).
    pods = [] if existing is None else ctx.kube.list_pods(ref.namespace, f"{builders.LABEL_RUNNER}={ref.name}")
    if ctx.settings.refresh_pods:
        refresh_pods(ctx, pods, config_version, written=written)
    return Children(pods, existing.ready_replicas if existing else 0)


def refresh_pods(ctx: RunnerContext, pods: list[PodInfo], config_version: str, *, written: bool) -> None:
    """Make every running pod read the config Secret now: the kubelet rewrites a pod's Secret volumes when the
    pod object changes, otherwise only at its periodic sync (`syncFrequency`, 1m by default), which after a token
    reset would leave each replica polling with a revoked token for up to a minute or more. An annotation on the
    pod itself (not the template): nothing restarts. Only after a write (or one cut short): at rest, none."""
    for name in pods_to_refresh(pods, config_version, written=written):
        ctx.kube.annotate_pod(ctx.ref.namespace, name, {builders.ANNOTATION_CONFIG_VERSION: config_version})


def _ca_source(ctx: RunnerContext) -> tuple[str, str] | None:
    """The Secret and key the manager pods mount GitLab's CA from: the CA's own Secret when it is in the Runner's
    namespace, else (a ClusterGitLabConnection's CA) the copy in the config Secret; None without a CA."""
    ca, namespace = ctx.spec.gitlab.ca, ctx.ref.namespace
    if ca is None:
        return None
    if ctx.spec.gitlab.secrets_namespace(namespace) == namespace:
        return ca.name, ca.key
    return ctx.ref.children.config_secret, builders.CA_COPY_KEY


def _statefulset(ctx: RunnerContext, config_checksum: str) -> dict[str, Any]:
    ref, spec = ctx.ref, ctx.spec
    ca_key = _ca_source(ctx)
    return builders.build_statefulset(
        spec,
        name=ref.children.statefulset,
        namespace=ref.namespace,
        owner=ref.owner(),
        config_secret=ref.children.config_secret,
        config_checksum=config_checksum,
        service_account=ref.children.service_account,
        ca_secret_key=ca_key,
        pin_ids=ctx.settings.pin_pod_ids,
    )


def check_children(ctx: RunnerContext) -> None:
    """Before anything is created in GitLab: the apiserver validates the StatefulSet this spec makes (a dry run),
    so a value the CRD cannot refuse but Kubernetes would (an image name with a space, a bad label) is reported,
    quoting the apiserver, while nothing exists yet."""
    ctx.kube.dry_run_statefulset(_statefulset(ctx, "dry-run"))
