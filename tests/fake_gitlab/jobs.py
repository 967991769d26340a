"""CI jobs for runner stand-ins: job payloads, the job trace (``PATCH /jobs/:id/trace``) and ``PUT /jobs/:id``.

GitLab's runner API (https://docs.gitlab.com/api/runners/, the ``/jobs`` endpoints gitlab-runner uses, defined in
GitLab's ``lib/api/ci/runner.rb``): the runner gets a job from ``POST /jobs/request`` with a job token; it appends
the job log with ``PATCH /jobs/:id/trace`` (the job token in ``JOB-TOKEN``, ``Content-Range: <start>-<end>``, the
bytes as the body; 202 with ``Range: 0-<size>``, 416 with the same header when ``start`` is past the end of what
GitLab holds, 403 for a wrong token or a job that no longer runs, 400 without ``Content-Range``), and reports its
final state through ``PUT /jobs/:id`` with ``token`` (the job token), ``state`` (``running``, ``success`` or
``failed``) and ``failure_reason``.
"""

from __future__ import annotations

import re
import secrets
import weakref
from typing import TYPE_CHECKING, Any

from .api import ApiError, Ctx, Handler, Response
from .state import Job, State

if TYPE_CHECKING:
    from .server import FakeGitLab

# Final states and traces per job id, per fake GitLab (kept here so the shared State stays unchanged).
_RESULTS: weakref.WeakKeyDictionary[State, dict[int, dict[str, str]]] = weakref.WeakKeyDictionary()
_TRACES: weakref.WeakKeyDictionary[State, dict[int, bytearray]] = weakref.WeakKeyDictionary()

FINAL_STATES = ("success", "failed", "canceled")


def _step(script: list[str]) -> dict[str, Any]:
    return {"name": "script", "script": script, "timeout": 3600, "when": "on_success", "allow_failure": False}


def sleep_job(seconds: int, *, succeed: bool = True) -> dict[str, Any]:
    """A job payload (for ``FakeGitLab.enqueue_job(payload=...)``) whose script sleeps, then exits 0 or 1."""
    script = [f"sleep {int(seconds)}", "exit 0" if succeed else "exit 1"]
    return {"token": "glcbt-" + secrets.token_urlsafe(15), "steps": [_step(script)]}


def script_job(
    lines: list[str],
    *,
    image: str | None = None,
    variables: dict[str, str] | None = None,
    registry_credentials: tuple[str, str, str] | None = None,
    project_id: int = 1,
) -> dict[str, Any]:
    """A job payload with the fields of GitLab's that the kubernetes executor reads: ``image`` (``.gitlab-ci.yml``'s
    ``image:``; None leaves the runner's default), ``variables``, ``steps`` and ``credentials`` (a registry
    ``(url, username, password)``, as GitLab sends for its container registry)."""
    credentials = []
    if registry_credentials is not None:
        url, username, password = registry_credentials
        credentials.append({"type": "registry", "url": url, "username": username, "password": password})
    return {
        "token": "glcbt-" + secrets.token_urlsafe(15),
        "image": {"name": image, "entrypoint": None, "command": None} if image else None,
        "variables": [
            {"key": key, "value": value, "public": True, "masked": False} for key, value in (variables or {}).items()
        ],
        "steps": [_step(list(lines))],
        "credentials": credentials,
        "job_info": {"id": 0, "name": "build", "stage": "test", "project_id": project_id, "project_name": "builds"},
    }


def _assigned_job(ctx: Ctx, job_id: int, token: str | None, *, running: bool) -> Job:
    """The job the token belongs to (and, with ``running``, still running); 403 otherwise (``authenticate_job!``)."""
    job = next((j for j in ctx.state.assigned_jobs if j.id == job_id), None)
    if job is None or not token or job.payload.get("token") != token:
        raise ApiError(403, {"message": "403 Forbidden"})
    if running and job_id in _RESULTS.get(ctx.state, {}):
        raise ApiError(403, {"message": "403 Forbidden  - Job is not running"})
    return job


def update_job(ctx: Ctx, m: re.Match[str]) -> Response:
    """``PUT /jobs/:id``: only the job token of an assigned job may update it; 403 otherwise, as GitLab does."""
    p = ctx.params
    token = p.string("token", required=True)
    state = p.string("state", values=("pending", "running", *FINAL_STATES))
    reason = p.string("failure_reason")
    p.check()
    job_id = int(m["id"])
    _assigned_job(ctx, job_id, token, running=False)
    if state in FINAL_STATES:
        _RESULTS.setdefault(ctx.state, {})[job_id] = {"state": state, "failure_reason": reason or ""}
    return Response(200)


def patch_trace(ctx: Ctx, m: re.Match[str]) -> Response:
    """``PATCH /jobs/:id/trace``: appends the body at the ``Content-Range`` start (GitLab's AppendBuildTraceService:
    the end is computed from the body; a start past what is held is refused with 416 and the size held)."""
    content_range = ctx.req.headers.get("content-range")
    if content_range is None:
        raise ApiError(400, {"message": "400 Missing header Content-Range"})
    job_id = int(m["id"])
    token = ctx.req.headers.get("job-token") or ctx.params.string("token")
    _assigned_job(ctx, job_id, token, running=True)
    held = _TRACES.setdefault(ctx.state, {}).setdefault(job_id, bytearray())
    start_text = content_range.split("-", 1)[0].strip()
    if not start_text.isdigit():
        raise ApiError(416, {"message": "416 Range Not Satisfiable"}, {"Range": f"0-{len(held)}"})
    start = int(start_text)
    if start > len(held):
        raise ApiError(416, {"message": "416 Range Not Satisfiable"}, {"Range": f"0-{len(held)}"})
    del held[start:]
    held.extend(ctx.req.raw)
    headers = {"Range": f"0-{len(held)}", "Job-Status": "running", "X-GitLab-Trace-Update-Interval": "3"}
    return Response(202, headers=headers)


def results(fake: FakeGitLab) -> dict[int, dict[str, str]]:
    """``{job_id: {"state": ..., "failure_reason": ...}}`` for every job that reported a final state."""
    with fake._lock:
        return {k: dict(v) for k, v in _RESULTS.get(fake._state, {}).items()}


def trace(fake: FakeGitLab, job_id: int) -> str:
    """The job's trace as GitLab holds it (what the runner appended), decoded."""
    with fake._lock:
        return bytes(_TRACES.get(fake._state, {}).get(job_id, b"")).decode(errors="replace")


ROUTES: list[tuple[str, str, Handler]] = [
    ("PUT", r"/jobs/(?P<id>[0-9]+)", update_job),
    ("PATCH", r"/jobs/(?P<id>[0-9]+)/trace", patch_trace),
]
