"""The GitLab client the use cases hold: every call of the operator to one GitLab instance with one token."""

from __future__ import annotations

from .access_tokens import AccessTokenCalls
from .deploy_tokens import DeployTokenCalls
from .graphql import GraphQLCalls
from .runners import RunnerCalls


class GitLabClient(RunnerCalls, GraphQLCalls, DeployTokenCalls, AccessTokenCalls):
    """Runner and deploy-token calls over one Session (see session.py); created by GitLabPool.client."""
