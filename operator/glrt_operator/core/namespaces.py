"""Which namespaces the operator may act in for a resource of another namespace.

A Runner's job pods may run in another namespace (its executor namespace), and a DeployToken's Secret may be copied
into others (for job pods there). Acting there for a tenant is a grant the tenant could not give itself: the target
namespace's owner says which namespaces it accepts with the annotation `glrt.dev/accept-from` (a comma-separated
list of namespaces, or `*`), and in the namespaced RBAC mode the target must also be one the operator watches (it
has no rights anywhere else). A resource's own namespace always accepts it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from .api import PREFIX
from .errors import ReconcileError
from .ports import KubePort
from .reasons import Reason

ANNOTATION_ACCEPT_FROM = f"{PREFIX}accept-from"


@dataclass(frozen=True)
class Scope:
    """The namespaces the operator serves: `watched` None means every namespace (the cluster-wide RBAC mode)."""

    watched: frozenset[str] | None = None

    @classmethod
    def of(cls, namespaces: Collection[str] | None) -> Scope:
        return cls(frozenset(namespaces) if namespaces else None)

    def serves(self, namespace: str) -> bool:
        return self.watched is None or namespace in self.watched


EVERY_NAMESPACE = Scope()


def accepts(annotations: Mapping[str, str], source: str) -> bool:
    """Does a namespace with these annotations accept resources of namespace `source`?"""
    entries = {entry.strip() for entry in annotations.get(ANNOTATION_ACCEPT_FROM, "").split(",")}
    return "*" in entries or source in entries


def check_target_namespace(kube: KubePort, scope: Scope, target: str, source: str, what: str) -> None:
    """Refuse, with what to fix, to act in namespace `target` for a resource of namespace `source`. `what` names the
    field that chose the target (for the message)."""
    if target == source:
        return
    if not scope.serves(target):
        served = ", ".join(sorted(scope.watched or ()))
        raise ReconcileError(
            Reason.NAMESPACE_NOT_WATCHED,
            f"{what} is namespace {target!r}, which the operator does not serve (it serves {served}): add it to the "
            "chart's watch.namespaces, or choose one of those.",
        )
    annotations = kube.read_namespace(target)
    if annotations is None:
        raise ReconcileError(
            Reason.NAMESPACE_MISSING, f"{what} is namespace {target!r}, which does not exist: create it."
        )
    if not accepts(annotations, source):
        raise ReconcileError(
            Reason.NAMESPACE_NOT_ACCEPTING,
            f"{what} is namespace {target!r}, which does not accept resources of namespace {source!r}: its owner "
            f"allows it with `kubectl annotate namespace {target} {ANNOTATION_ACCEPT_FROM}={source}` (a "
            "comma-separated list, or *).",
        )
