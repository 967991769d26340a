"""Out-of-process control API of the fake GitLab, under ``/-/fake/`` (not part of GitLab).

The demo and the benchmarks drive the fake through it. No authentication; tokens are always masked; calls to it
are neither recorded nor subject to faults.

| Endpoint | Effect |
|---|---|
| ``GET /-/fake/health`` | ``{"status": "ok"}`` |
| ``GET /-/fake/state`` | runners (tokens masked) with managers, settings, time, counts |
| ``GET /-/fake/calls[?since=N]`` | the call log (from index N) |
| ``GET/POST/DELETE /-/fake/faults`` | list, add one (JSON body of :class:`Fault` fields), clear |
| ``GET/POST /-/fake/clock`` | read; ``{"advance": s}``, ``{"set": iso}``, ``{"freeze": bool}`` |
| ``POST /-/fake/expire/{id}``, ``POST /-/fake/revoke/{id}`` | expire / rotate a runner's token out of band |
| ``PATCH /-/fake/runners/{id}`` | edit runner fields directly, as a person in the UI would (no validation) |
| ``DELETE /-/fake/runners/{id}`` | delete a runner behind the operator's back (token revoked) |
| ``POST /-/fake/reset`` | clear runners, calls, faults |
| ``GET/PUT /-/fake/settings`` | token expiration intervals (runner token expiry) |
| ``POST /-/fake/jobs`` | queue a job ``{"runner_id"?, "tags"?, "payload"?}`` for ``/jobs/request`` |
| ``GET/POST /-/fake/access_tokens``, ``POST .../{id}/revoke`` | list (masked), add, revoke access tokens |
| ``GET /-/fake/token_counters`` | calls with revoked / expired tokens, reuse detections |
| ``GET/PUT /-/fake/instance`` | the GitLab version (gates features), revision, KAS, edition |
| ``GET/PUT /-/fake/graphql`` | ``{"enabled": bool, "removed_fields": [...]}`` of ``/api/graphql`` (graphql_api.py) |
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from . import access_tokens, graphql_api
from .api import Response
from .faults import Fault
from .state import Settings, iso, parse_time

# Runner fields PATCH /-/fake/runners/{id} may set.
EDITABLE = (
    "description",
    "maintenance_note",
    "paused",
    "locked",
    "run_untagged",
    "tag_list",
    "access_level",
    "maximum_timeout",
)

if TYPE_CHECKING:
    from .server import FakeGitLab


def _error(status: int, message: str) -> Response:
    return Response(status, {"message": message})


def _json_body(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


def handle(fake: FakeGitLab, method: str, path: str, query: str, raw: bytes) -> Response:
    """Serve one control request; ``path`` starts with ``/-/fake``."""
    try:
        body = _json_body(raw)
    except ValueError as exc:
        return _error(400, f"invalid JSON body: {exc}")
    route = path[len("/-/fake") :].rstrip("/") or "/"
    try:
        return _route(fake, method, route, parse_qs(query), body)
    except (ValueError, TypeError, KeyError, re.error) as exc:
        return _error(400, f"{type(exc).__name__}: {exc}")


def _route(fake: FakeGitLab, method: str, route: str, query: dict[str, list[str]], body: dict[str, Any]) -> Response:
    if route == "/health" and method == "GET":
        return Response(200, {"status": "ok"})
    if route == "/state" and method == "GET":
        return Response(200, fake.state_json())
    if route == "/calls" and method == "GET":
        since = int(query.get("since", ["0"])[0])
        return Response(200, [call_json(c) for c in fake.calls[since:]])
    if route == "/faults":
        if method == "GET":
            return Response(200, [f.as_dict() for f in fake.faults.rules])
        if method == "POST":
            fault = fake.faults.add(Fault.from_dict(body))
            return Response(201, fault.as_dict())
        if method == "DELETE":
            fake.faults.clear()
            return Response(204)
    if route == "/clock":
        if method == "POST":
            if "set" in body:
                fake.clock.set(parse_time(str(body["set"])))
            if "advance" in body:
                fake.clock.advance(float(body["advance"]))
            if body.get("freeze") is True:
                fake.clock.freeze()
            elif body.get("freeze") is False:
                fake.clock.unfreeze()
        if method in ("GET", "POST"):
            return Response(200, {"now": iso(fake.clock.now()), "frozen": fake.clock.is_frozen})
    match = re.fullmatch(r"/(expire|revoke)/(\d+)", route)
    if match and method == "POST":
        runner_id = int(match[2])
        if runner_id not in fake.runner_ids():
            return _error(404, "404 Runner Not Found")
        if match[1] == "expire":
            fake.expire_token(runner_id)
        else:
            fake.revoke_token(runner_id)
        return Response(200, fake.runner_json(runner_id))
    match = re.fullmatch(r"/runners/(\d+)", route)
    if match and method in ("PATCH", "DELETE"):
        runner_id = int(match[1])
        if runner_id not in fake.runner_ids():
            return _error(404, "404 Runner Not Found")
        if method == "DELETE":
            fake.delete_runner(runner_id)
            return Response(204)
        unknown = sorted(set(body) - set(EDITABLE))
        if unknown:
            return _error(400, f"not editable here: {', '.join(unknown)}")
        fake.update_runner(runner_id, **body)
        return Response(200, fake.runner_json(runner_id))
    if route == "/reset" and method == "POST":
        fake.reset()
        return Response(204)
    if route == "/settings":
        if method == "PUT":
            unknown = sorted(set(body) - set(Settings.FIELDS))
            if unknown:
                return _error(400, f"unknown settings: {', '.join(unknown)}")
            for name, value in body.items():
                if isinstance(getattr(fake.settings, name), bool):
                    setattr(fake.settings, name, bool(value))
                else:
                    setattr(fake.settings, name, None if value is None else int(value))
        if method in ("GET", "PUT"):
            return Response(200, fake.settings.as_dict())
    if route == "/graphql":
        return graphql_api.control(fake, method, body)
    if route == "/jobs" and method == "POST":
        job_id = fake.enqueue_job(runner_id=body.get("runner_id"), tags=body.get("tags"), payload=body.get("payload"))
        return Response(201, {"id": job_id})
    handled = access_tokens.control(fake, method, route, body)
    if handled is not None:
        return handled
    return _error(404, f"no control endpoint {method} /-/fake{route}")


def call_json(call: Any) -> dict[str, Any]:
    return {
        "method": call.method,
        "path": call.path,
        "status": call.status,
        "query": call.query,
        "body_keys": call.body_keys,
        "time": iso(call.time),
        "user": call.user,
        "runner_id": call.runner_id,
        "fault": call.fault,
        "params": call.params,
        "duration": round(call.duration, 6),
    }
