"""A stateful fake GitLab HTTP server for tests, the demo and benchmarks.

The runner and deploy-token endpoints of GitLab's REST API (``/api/v4``), its GraphQL API for runners
(``/api/graphql``) and the registry's token check, with fault injection and a control API under ``/-/fake/``.
Comments in this package cite GitLab's documentation by these short names:

- REST API: https://docs.gitlab.com/api/rest/ (REST pagination: its #pagination section; REST status codes:
  https://docs.gitlab.com/api/rest/troubleshooting/; REST authentication: https://docs.gitlab.com/api/rest/authentication/)
- runners API: https://docs.gitlab.com/api/runners/ ; create a runner:
  https://docs.gitlab.com/api/users/#create-a-runner-linked-to-a-user
- runner token expiry: https://docs.gitlab.com/ci/runners/configure_runners/#authentication-token-security
- token prefixes: https://docs.gitlab.com/security/tokens/#token-prefixes
- job requests: ``POST /jobs/request``, used by gitlab-runner, defined in GitLab's ``lib/api/ci/runner.rb``
  (https://gitlab.com/gitlab-org/gitlab)
- rate limits: https://docs.gitlab.com/security/rate_limits/ ; permissions: https://docs.gitlab.com/user/permissions/
- deploy tokens: https://docs.gitlab.com/api/deploy_tokens/ and https://docs.gitlab.com/user/project/deploy_tokens/
- access tokens (self-information, rotation, reuse detection): https://docs.gitlab.com/api/personal_access_tokens/ ,
  https://docs.gitlab.com/api/group_access_tokens/ (:mod:`.access_tokens`); instance metadata and the version
  that gates features: https://docs.gitlab.com/api/metadata/ (:mod:`.metadata`, :mod:`.versions`)
- GraphQL (``/api/graphql``, :mod:`.graphql_api`): https://docs.gitlab.com/api/graphql/

Typical use::

    with FakeGitLab().running() as gl:
        alice = gl.add_user("alice", admin=True)
        gl.add_access_token("glpat-alice", alice, scopes=["api"])
        httpx.post(gl.url + "/api/v4/user/runners", headers={"PRIVATE-TOKEN": "glpat-alice"},
                   json={"runner_type": "instance_type"})
"""

from .faults import FAULT_KINDS, Fault, FaultSet
from .server import FakeGitLab
from .state import (
    AccessToken,
    Call,
    Clock,
    Group,
    Manager,
    Project,
    ReuseDetection,
    Runner,
    Settings,
    TokenCounters,
    User,
)
from .versions import Instance

__all__ = [
    "FAULT_KINDS",
    "AccessToken",
    "Call",
    "Clock",
    "FakeGitLab",
    "Fault",
    "FaultSet",
    "Group",
    "Instance",
    "Manager",
    "Project",
    "ReuseDetection",
    "Runner",
    "Settings",
    "TokenCounters",
    "User",
]
