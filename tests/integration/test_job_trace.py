"""The fake GitLab's job trace and job update endpoints over HTTP, as gitlab-runner calls them (GitLab's runner API:
``PATCH /api/v4/jobs/:id/trace`` with ``JOB-TOKEN`` and ``Content-Range``, ``PUT /api/v4/jobs/:id``)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fake_gitlab import FakeGitLab, jobs


@pytest.fixture
def taken() -> Iterator[tuple[FakeGitLab, httpx.Client, int, str]]:
    """A fake GitLab, a client on its API, and a job a runner took: (fake, client, job id, job token)."""
    with FakeGitLab().running() as gl, httpx.Client(base_url=gl.url + "/api/v4", timeout=10) as http:
        runner = gl.create_runner()
        gl.enqueue_job(runner_id=runner.id, payload=jobs.script_job(["echo hi"], image="alpine:3"))
        response = http.post("/jobs/request", json={"token": runner.token, "system_id": "s_000000000001"})
        assert response.status_code == 201
        body = response.json()
        assert body["image"]["name"] == "alpine:3" and body["steps"][0]["script"] == ["echo hi"]
        yield gl, http, int(body["id"]), str(body["token"])


def patch(http: httpx.Client, job_id: int, token: str, start: int, data: bytes) -> httpx.Response:
    headers = {"JOB-TOKEN": token, "Content-Range": f"{start}-{start + len(data) - 1}", "Content-Type": "text/plain"}
    return http.patch(f"/jobs/{job_id}/trace", content=data, headers=headers)


def test_trace_patches_append_and_a_wrong_start_gets_416_with_the_size_held(
    taken: tuple[FakeGitLab, httpx.Client, int, str],
) -> None:
    gl, http, job_id, token = taken
    first = patch(http, job_id, token, 0, b"$ echo hi\n")
    assert (first.status_code, first.headers["Range"]) == (202, "0-10")
    assert patch(http, job_id, token, 10, b"hi\n").headers["Range"] == "0-13"
    gap = patch(http, job_id, token, 20, b"lost\n")
    assert (gap.status_code, gap.headers["Range"]) == (416, "0-13")
    # A resend from an earlier offset replaces what follows it, as GitLab's trace append does.
    assert patch(http, job_id, token, 10, b"hi again\n").headers["Range"] == "0-19"
    assert jobs.trace(gl, job_id) == "$ echo hi\nhi again\n"


def test_trace_refuses_a_wrong_job_token_a_missing_range_and_a_finished_job(
    taken: tuple[FakeGitLab, httpx.Client, int, str],
) -> None:
    gl, http, job_id, token = taken
    assert patch(http, job_id, "glcbt-wrong", 0, b"x").status_code == 403
    no_range = http.patch(f"/jobs/{job_id}/trace", content=b"x", headers={"JOB-TOKEN": token})
    assert no_range.status_code == 400
    assert http.put(f"/jobs/{job_id}", json={"token": token, "state": "success"}).status_code == 200
    assert jobs.results(gl)[job_id] == {"state": "success", "failure_reason": ""}
    assert patch(http, job_id, token, 0, b"late\n").status_code == 403
    assert jobs.trace(gl, job_id) == ""
