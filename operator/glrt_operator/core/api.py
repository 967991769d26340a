"""The operator's API: its group and version, the kinds it serves and their plurals, its finalizer. Every other
module names a resource through these, never through a literal."""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "glrt.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
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


RUNNER = Kind("Runner", "runners")
DEPLOY_TOKEN = Kind("DeployToken", "deploytokens")
GITLAB_CONNECTION = Kind("GitLabConnection", "gitlabconnections")
CLUSTER_GITLAB_CONNECTION = Kind("ClusterGitLabConnection", "clustergitlabconnections")
KINDS = (RUNNER, DEPLOY_TOKEN, GITLAB_CONNECTION, CLUSTER_GITLAB_CONNECTION)
CONNECTION_KINDS = (GITLAB_CONNECTION, CLUSTER_GITLAB_CONNECTION)
