"""A stateful fake GitLab HTTP server for tests, the demo and benchmarks.

Follows GitLab's REST API documentation (https://docs.gitlab.com/api/runners/,
https://docs.gitlab.com/api/deploy_tokens/): the runner and deploy-token endpoints of the REST API (``/api/v4``), with
fault injection and a control API under ``/-/fake/``. Typical use::

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
    Runner,
    Settings,
    User,
)

__all__ = [
    "FAULT_KINDS",
    "AccessToken",
    "Call",
    "Clock",
    "FakeGitLab",
    "Fault",
    "FaultSet",
    "Group",
    "Manager",
    "Project",
    "Runner",
    "Settings",
    "User",
]
