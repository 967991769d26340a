"""The Kubernetes objects a `Runner` owns besides its token Secret: the config Secret (config.toml and the
replicas' system_ids) and the StatefulSet of manager pods, built by the pure builders and server-side applied."""

from __future__ import annotations

from collections.abc import Mapping

from ..runner_config.credentials import TomlPath
from . import builders
from .context import RunnerContext


def apply_children(
    ctx: RunnerContext, runner_id: int, token: str, credentials: Mapping[TomlPath, str] | None = None
) -> None:
    """`credentials`: what `credentials.config_credentials` read for spec.config's Secret references."""
    ref, spec = ctx.ref, ctx.spec
    names = ref.children
    ca_key = (spec.gitlab.ca.name, spec.gitlab.ca.key) if spec.gitlab.ca else None
    rendered = builders.render_config_toml(
        spec,
        runner_name=ref.name,
        runner_id=runner_id,
        token=token,
        ca_path=builders.CA_FILE if ca_key else None,
        default_namespace=ref.namespace,
        credentials=credentials,
    )
    ctx.kube.apply_secret(
        builders.build_config_secret(
            name=names.config_secret,
            namespace=ref.namespace,
            owner=ref.owner(),
            runner_name=ref.name,
            runner_uid=ref.uid,
            replicas=spec.replicas,
            rendered=rendered,
        )
    )
    ctx.kube.apply_statefulset(
        builders.build_statefulset(
            spec,
            name=names.statefulset,
            namespace=ref.namespace,
            owner=ref.owner(),
            config_secret=names.config_secret,
            config_checksum=rendered.token_free_sha256,
            ca_secret_key=ca_key,
        )
    )
