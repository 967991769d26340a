"""CI jobs for runner stand-ins: a job that sleeps and then succeeds or fails, and ``PUT /jobs/:id``.

GitLab's runner API (https://docs.gitlab.com/api/runners/, the ``/jobs`` endpoints gitlab-runner uses): the runner
gets a job from ``POST /jobs/request`` with a job token, and reports its final state through ``PUT /jobs/:id``
with ``token`` (the job token), ``state`` (``running``, ``success`` or ``failed``) and ``failure_reason``.
"""

from __future__ import annotations

import re
import secrets
import weakref
from typing import TYPE_CHECKING, Any

from .api import ApiError, Ctx, Handler, Response
from .state import State

if TYPE_CHECKING:
    from .server import FakeGitLab

# Final states reported per job id, per fake GitLab (kept here so the shared State stays unchanged).
_RESULTS: weakref.WeakKeyDictionary[State, dict[int, dict[str, str]]] = weakref.WeakKeyDictionary()


def sleep_job(seconds: int, *, succeed: bool = True) -> dict[str, Any]:
    """A job payload (for ``FakeGitLab.enqueue_job(payload=...)``) whose script sleeps, then exits 0 or 1."""
    script = [f"sleep {int(seconds)}", "exit 0" if succeed else "exit 1"]
    return {
        "token": "glcbt-" + secrets.token_urlsafe(15),
        "steps": [{"name": "script", "script": script, "timeout": 3600, "when": "on_success", "allow_failure": False}],
    }


def update_job(ctx: Ctx, m: re.Match[str]) -> Response:
    """``PUT /jobs/:id``: only the job token of an assigned job may update it; 403 otherwise, as GitLab does."""
    p = ctx.params
    token = p.string("token", required=True)
    state = p.string("state", values=("pending", "running", "success", "failed", "canceled"))
    reason = p.string("failure_reason")
    p.check()
    job_id = int(m["id"])
    job = next((j for j in ctx.state.assigned_jobs if j.id == job_id), None)
    if job is None or not token or job.payload.get("token") != token:
        raise ApiError(403, {"message": "403 Forbidden"})
    if state in ("success", "failed", "canceled"):
        _RESULTS.setdefault(ctx.state, {})[job_id] = {"state": state, "failure_reason": reason or ""}
    return Response(200)


def results(fake: FakeGitLab) -> dict[int, dict[str, str]]:
    """``{job_id: {"state": ..., "failure_reason": ...}}`` for every job that reported a final state."""
    with fake._lock:
        return {k: dict(v) for k, v in _RESULTS.get(fake._state, {}).items()}


ROUTES: list[tuple[str, str, Handler]] = [("PUT", r"/jobs/(?P<id>[0-9]+)", update_job)]
