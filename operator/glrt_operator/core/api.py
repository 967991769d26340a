"""The operator's API: its group and version, the kinds it serves and their plurals, its finalizer. Every other
module names a resource through these, never through a literal."""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "glrt.dev"
# The version the operator reads and writes, and the one the API server stores (docs/operations/api-versions.md).
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
# Older versions still served with the same schema (no conversion webhook: the API server only rewrites
# apiVersion), each answered with a deprecation warning naming VERSION.
DEPRECATED_VERSIONS = ("v1alpha1",)
FINALIZER = f"{GROUP}/finalizer"
# Annotations and labels the operator writes start with this prefix.
PREFIX = f"{GROUP}/"


@dataclass(frozen=True)
class Kind:
    """One resource kind of the API."""

    kind: str
    plural: str

    @property
    def api_version(self) -> str:
        return API_VERSION

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


def deprecation_warning(version: str, kind: str) -> str:
    """The warning the API server sends with every request to a deprecated version (the CRD carries it)."""
    return f"{GROUP}/{version} {kind} is deprecated; use {API_VERSION} {kind}"


RUNNER = Kind("Runner", "runners")
DEPLOY_TOKEN = Kind("DeployToken", "deploytokens")
GITLAB_CONNECTION = Kind("GitLabConnection", "gitlabconnections")
CLUSTER_GITLAB_CONNECTION = Kind("ClusterGitLabConnection", "clustergitlabconnections")
KINDS = (RUNNER, DEPLOY_TOKEN, GITLAB_CONNECTION, CLUSTER_GITLAB_CONNECTION)
CONNECTION_KINDS = (GITLAB_CONNECTION, CLUSTER_GITLAB_CONNECTION)
# The kinds released under DEPRECATED_VERSIONS: served in those too, and migrated to VERSION at start. The connection
# kinds arrived with VERSION and are served in it alone.
VERSIONED_KINDS = (RUNNER, DEPLOY_TOKEN)
