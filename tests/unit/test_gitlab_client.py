"""The GitLab adapter over httpx.MockTransport: request shapes, error classification, no token in any message."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx
import pytest

from glrt_operator.adapters.gitlab import GitLabError, GitLabPool
from glrt_operator.adapters.gitlab.runners import TOKEN_PROBE_SYSTEM_ID

PAT = "glpat-secret-access-token"
RUNNER_TOKEN = "glrt-t3_secret-runner-token"


def client(handler: Callable[[httpx.Request], httpx.Response]):  # type: ignore[no-untyped-def]
    return GitLabPool(transport=httpx.MockTransport(handler)).client("https://gitlab.test/api/v4", PAT)


def test_create_sends_attributes_with_the_access_token_and_parses_the_reply() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            201, json={"id": 9, "token": RUNNER_TOKEN, "token_expires_at": "2026-12-01T10:00:00.000Z"}
        )

    created = client(handler).create_runner({"runner_type": "project_type", "project_id": 7})
    assert created.id == 9 and created.token.token == RUNNER_TOKEN
    assert created.token.expires_at is not None and created.token.expires_at.year == 2026
    assert RUNNER_TOKEN not in repr(created)
    request = seen[0]
    assert request.method == "POST" and request.url.path == "/api/v4/user/runners"
    assert request.headers["PRIVATE-TOKEN"] == PAT
    assert json.loads(request.content) == {"runner_type": "project_type", "project_id": 7}


def test_runner_token_calls_do_not_send_the_access_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    assert client(handler).delete_manager(RUNNER_TOKEN, "r_abcdefABCDEF") is True
    assert "PRIVATE-TOKEN" not in seen[0].headers
    assert json.loads(seen[0].content) == {"token": RUNNER_TOKEN, "system_id": "r_abcdefABCDEF"}


@pytest.mark.parametrize(
    ("status", "body", "headers", "retryable", "retry_after", "reason"),
    [
        (401, {"message": "401 Unauthorized"}, {}, False, None, "AccessTokenInvalid"),
        (403, {"error": "insufficient_scope"}, {}, False, None, "AccessTokenForbidden"),
        (400, {"message": "400 Bad request - Missing/invalid project"}, {}, False, None, "GitLabRejected"),
        (429, {"message": "Retry later"}, {"Retry-After": "42"}, True, 42.0, "GitLabRateLimited"),
        (503, {"message": "503"}, {}, True, None, "GitLabUnavailable"),
        (500, {"message": "500"}, {"Retry-After": "7"}, True, 7.0, "GitLabUnavailable"),
    ],
)
def test_errors_are_classified(
    status: int, body: dict[str, str], headers: dict[str, str], retryable: bool, retry_after: float | None, reason: str
) -> None:
    gl = client(lambda request: httpx.Response(status, json=body, headers=headers))
    with pytest.raises(GitLabError) as caught:
        gl.update_runner(5, {"description": "x"})
    error = caught.value
    assert error.status == status and error.retryable is retryable and error.retry_after == retry_after
    assert error.reason == reason
    assert str(status) in str(error) and PAT not in str(error)


def test_text_rate_limit_body_is_reported() -> None:
    gl = client(lambda request: httpx.Response(429, text="Retry later\n", headers={"Retry-After": "3"}))
    with pytest.raises(GitLabError, match="Retry later") as caught:
        gl.list_managers(1)
    assert caught.value.retry_after == 3.0


def test_network_failure_is_retryable_and_names_no_secret() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"connection refused for {request.headers['PRIVATE-TOKEN']}", request=request)

    with pytest.raises(GitLabError) as caught:
        client(handler).get_runner(1)
    assert caught.value.retryable and caught.value.status is None
    assert caught.value.reason == "GitLabUnreachable"
    assert PAT not in str(caught.value) and "ConnectError" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_missing_runner_and_manager_are_not_errors() -> None:
    gl = client(lambda request: httpx.Response(404, json={"message": "404 Runner Not Found"}))
    assert gl.get_runner(1) is None
    assert gl.delete_runner(1) is False
    assert gl.delete_manager(RUNNER_TOKEN, "r_abcdefABCDEF") is False


def test_list_walks_every_page() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        items = [{"id": page * 10 + i, "description": "", "status": "online", "created_at": None} for i in range(2)]
        return httpx.Response(200, json=items, headers={"x-next-page": "" if page == 3 else str(page + 1)})

    ids = [r.id for r in client(handler).list_runners("/projects/7/runners", type="project_type")]
    assert ids == [10, 11, 20, 21, 30, 31]


def test_reset_token() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"token": RUNNER_TOKEN, "token_expires_at": None})

    issued = client(handler).reset_token(4)
    assert issued.token == RUNNER_TOKEN and issued.expires_at is None


@pytest.mark.parametrize(("status", "valid"), [(403, False), (404, True)])
def test_token_check_deletes_nothing_it_could_find(status: int, valid: bool) -> None:
    """403: GitLab refuses the token; 404: the token passed and no manager has the probe's system_id."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json={"message": f"{status}"})

    assert client(handler).token_is_valid(RUNNER_TOKEN) is valid
    body = json.loads(seen[0].content)
    assert seen[0].method == "DELETE" and seen[0].url.path == "/api/v4/runners/managers"
    assert body["system_id"] == TOKEN_PROBE_SYSTEM_ID and not re.match(r"^[sr]_[0-9a-zA-Z]{12}$", body["system_id"])
    assert "PRIVATE-TOKEN" not in seen[0].headers


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        (httpx.Response(200, html="<html>Sign in</html>"), "NotGitLab"),
        (httpx.Response(200, content=b""), "NotGitLab"),
        (httpx.Response(302, headers={"Location": "https://gitlab.test/users/sign_in?x=1"}), "NotGitLab"),
        (httpx.Response(201, json={"id": 9}), "GitLabAnswerInvalid"),
        (httpx.Response(201, json=[1, 2]), "GitLabAnswerInvalid"),
        (httpx.Response(201, json={"id": "nine", "token": RUNNER_TOKEN}), "GitLabAnswerInvalid"),
    ],
)
def test_an_answer_that_is_not_gitlabs_is_a_gitlab_error(response: httpx.Response, kind: str) -> None:
    with pytest.raises(GitLabError) as caught:
        client(lambda request: response).create_runner({"runner_type": "instance_type"})
    assert caught.value.reason == kind and not caught.value.retryable
    assert "spec.gitlab.url" in str(caught.value) and RUNNER_TOKEN not in str(caught.value)
    assert caught.value.nothing_done == (kind == "NotGitLab")


@pytest.mark.parametrize("token", ["\ufeffglpat-x", "glpat-x\n", "glpat x", "glpat-é", "glpat-\x00"])
def test_a_token_no_header_can_carry_is_refused_before_any_request(token: str) -> None:
    seen: list[httpx.Request] = []
    pool = GitLabPool(transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(200)))
    with pytest.raises(GitLabError) as caught:
        pool.client("https://gitlab.test/api/v4", token).get_runner(1)
    assert caught.value.reason == "AccessTokenMalformed" and seen == [] and token not in str(caught.value)


def test_a_ca_bundle_that_is_not_pem() -> None:
    with pytest.raises(GitLabError) as caught:
        GitLabPool().client("https://gitlab.test/api/v4", PAT, "not a certificate")
    assert caught.value.reason == "CAInvalid" and caught.value.nothing_done


@pytest.mark.parametrize(
    ("status", "nothing_done"), [(400, True), (404, True), (429, True), (500, False), (502, False)]
)
def test_which_refusals_prove_nothing_was_done(status: int, nothing_done: bool) -> None:
    with pytest.raises(GitLabError) as caught:
        client(lambda request: httpx.Response(status, json={"message": "x"})).create_runner({})
    assert caught.value.nothing_done is nothing_done


@pytest.mark.parametrize(
    ("call", "answer", "reason"),
    [
        (lambda gl: gl.list_deploy_tokens("projects/7"), httpx.Response(200, text="<html>login</html>"), "NotGitLab"),
        (lambda gl: gl.list_deploy_tokens("projects/7"), httpx.Response(200, json={"id": 1}), "GitLabAnswerInvalid"),
        (
            lambda gl: gl.create_deploy_token("projects/7", name="n", scopes=["read_registry"], expires_on=None,
                                              username=None),
            httpx.Response(201, json={"id": "x"}),
            "GitLabAnswerInvalid",
        ),
        (lambda gl: gl.list_managers(5), httpx.Response(200, json={"managers": []}), "GitLabAnswerInvalid"),
    ],
)  # fmt: skip
def test_every_call_classifies_an_answer_of_the_wrong_shape(
    call: Callable, answer: httpx.Response, reason: str
) -> None:  # type: ignore[type-arg]
    """Deploy-token calls go through the same answer checks as runner calls: garbage is never an UnexpectedError."""
    with pytest.raises(GitLabError) as caught:
        call(client(lambda request: answer))
    assert caught.value.reason == reason and not caught.value.retryable
