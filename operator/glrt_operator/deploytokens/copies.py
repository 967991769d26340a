"""Copies of a DeployToken's Secret in other namespaces (`spec.secret.copyTo`), kept current with it.

A Runner's job pods run in its executor namespace and pull their images with Secrets of that namespace; the
DeployToken lives beside the Runner. The operator writes the same Secret there whenever it writes its own (before
the previous token is revoked, so a copy never holds a token GitLab refuses), and repairs a copy that drifted. Each
target must accept the DeployToken's namespace (`core.namespaces`: its owner's annotation, and a namespace the
operator serves), so no tenant can make the operator write where it could not itself. No owner reference reaches
another namespace: each copy is recorded in `status.copies` before it is written, and removed when it leaves
`copyTo` or the DeployToken is deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..core.errors import ReconcileError
from ..core.events import EventSink
from ..core.namespaces import Scope, check_target_namespace
from ..core.objects import encoded
from ..core.ports import KubePort
from ..core.reasons import EventReason, Reason
from . import builders
from .context import DeployTokenContext, DeployTokenRef
from .model import DeployTokenSpec

FIELD = "spec.secret.copyTo"


def check(kube: KubePort, scope: Scope, ref: DeployTokenRef, spec: DeployTokenSpec) -> None:
    """Before anything is created: every target accepts this namespace, and its Secret of that name, if any, is a
    copy of this DeployToken's."""
    for namespace in spec.secret.copy_to:
        if namespace == ref.namespace:
            raise ReconcileError(
                Reason.INVALID_SPEC,
                f"{FIELD} names the DeployToken's own namespace {namespace!r}, where the Secret already is: remove it.",
                permanent=True,
            )
        check_target_namespace(kube, scope, namespace, ref.namespace, f"{FIELD} names a namespace that")
        found = kube.read_secret(namespace, spec.secret.name)
        if found is not None and found.annotations.get(builders.ANNOTATION_COPY_OF_UID) != ref.uid:
            raise ReconcileError(
                Reason.SECRET_NAME_TAKEN,
                f"Secret {spec.secret.name!r} in namespace {namespace!r} ({FIELD}) exists and is not this "
                "DeployToken's copy: delete it or choose another spec.secret.name.",
            )


def sync(ctx: DeployTokenContext, desired: Mapping[str, Any]) -> None:
    """Write the copies of `desired` (the DeployToken's own Secret) that differ from it, and remove the copies of
    namespaces no longer in copyTo."""
    wanted = ctx.spec.secret.copy_to
    recorded = set(ctx.status.copies)
    if not set(wanted) <= recorded:
        ctx.record(copies=tuple(sorted(recorded | set(wanted))))  # first: the deletion finds every copy
    for namespace in wanted:
        copy = builders.copy_of(desired, namespace, ctx.ref.uid)
        found = ctx.kube.read_secret(namespace, ctx.spec.secret.name)
        if found is None or encoded(dict(found.data)) != copy["data"] or not _annotated(found.annotations, copy):
            ctx.kube.apply_secret(copy)
    gone = recorded - set(wanted)
    if gone:
        remove(ctx.kube, ctx.ref, ctx.spec.secret.name, gone, ctx.emit)
        ctx.record(copies=tuple(sorted(set(wanted))))


def _annotated(found: Mapping[str, str], copy: Mapping[str, Any]) -> bool:
    return all(found.get(k) == v for k, v in copy["metadata"]["annotations"].items())


def remove(kube: KubePort, ref: DeployTokenRef, name: str, namespaces: Iterable[str], emit: EventSink) -> None:
    """Delete these copies (only this DeployToken's; one already gone counts as done)."""
    for namespace in sorted(namespaces):
        found = kube.read_secret(namespace, name)
        if found is not None and found.annotations.get(builders.ANNOTATION_COPY_OF_UID) == ref.uid:
            kube.delete_secret(namespace, name)
            emit("Normal", EventReason.SECRET_COPY_REMOVED, f"Removed the copy of Secret {name!r} in {namespace!r}")
