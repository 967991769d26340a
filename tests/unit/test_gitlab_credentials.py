"""The adapter's credential per token family (adapters/gitlab/credentials.py) over httpx.MockTransport: a rotation
moves every client of the family to the successor, waits for the calls in flight, and a rotation in doubt holds
calls back without sending them."""

from __future__ import annotations

import threading
import time
from datetime import date

import httpx
import pytest

from glrt_operator.adapters.gitlab import GitLabError, GitLabPool
from glrt_operator.core.reasons import Reason

API = "https://gitlab.test/api/v4"
OLD, NEW = "glpat-old-token-0001", "glpat-new-token-0002"
INFO = {"id": 1, "name": "ops", "scopes": ["api"], "expires_at": "2027-01-01", "active": True}


class GitLab:
    """Rotates OLD into NEW; records (path, token) of every request it gets, and when it answered."""

    def __init__(self, rotate_status: int = 200, slow_path: str | None = None) -> None:
        self.seen: list[tuple[str, str]] = []
        self.rotate_status = rotate_status
        self.slow_path = slow_path

    def __call__(self, request: httpx.Request) -> httpx.Response:
        token = request.headers.get("PRIVATE-TOKEN", "")
        if request.url.path == self.slow_path:
            time.sleep(0.5)
        self.seen.append((request.url.path, token))
        if request.url.path.endswith("/self/rotate"):
            if self.rotate_status != 200:
                return httpx.Response(self.rotate_status, json={"message": "bad gateway"})
            return httpx.Response(200, json={**INFO, "id": 2, "token": NEW})
        return httpx.Response(200, json={**INFO, "version": "18.0.0"})


def pool(gitlab: GitLab) -> GitLabPool:
    return GitLabPool(transport=httpx.MockTransport(gitlab))


def test_every_client_of_the_family_sends_the_successor_after_a_rotation() -> None:
    gitlab = GitLab()
    p = pool(gitlab)
    before, rotator = p.client(API, OLD), p.client(API, OLD)
    rotated = rotator.rotate_access_token_self(date(2027, 1, 1))
    assert rotated.token == NEW
    before.access_token_self()
    p.client(API, OLD).instance_metadata()  # made from the old token after the rotation
    p.for_resyncs().client(API, OLD).instance_metadata()
    p.client(API, NEW).instance_metadata()
    assert [token for _, token in gitlab.seen] == [OLD, NEW, NEW, NEW, NEW]
    assert before.current_token() == NEW
    # Another GitLab (another URL) with the same token string is another credential.
    assert p.client("https://other.test/api/v4", OLD).current_token() == OLD


def test_the_rotation_waits_for_the_call_in_flight() -> None:
    gitlab = GitLab(slow_path="/api/v4/metadata")
    p = pool(gitlab)
    slow = threading.Thread(target=p.client(API, OLD).instance_metadata)
    slow.start()
    time.sleep(0.1)
    p.client(API, OLD).rotate_access_token_self(date(2027, 1, 1))
    slow.join(5)
    assert [path for path, _ in gitlab.seen] == ["/api/v4/metadata", "/api/v4/personal_access_tokens/self/rotate"]


def test_a_rotation_in_doubt_holds_calls_back_until_get_self_settles_it() -> None:
    gitlab = GitLab(rotate_status=502)
    p = pool(gitlab)
    user = p.client(API, OLD)
    with pytest.raises(GitLabError):
        p.client(API, OLD).rotate_access_token_self(date(2027, 1, 1))
    with pytest.raises(GitLabError) as held:
        user.instance_metadata()
    assert held.value.reason == Reason.TOKEN_ROTATING and held.value.nothing_done and held.value.retryable
    assert len(gitlab.seen) == 1  # the rotate only: the held call was never sent
    p.client(API, OLD).access_token_self()  # GitLab accepts the old token: the rotation never happened
    user.instance_metadata()
    assert [token for _, token in gitlab.seen] == [OLD, OLD, OLD]


def test_a_refused_rotation_leaves_no_doubt() -> None:
    gitlab = GitLab(rotate_status=400)
    p = pool(gitlab)
    with pytest.raises(GitLabError) as refused:
        p.client(API, OLD).rotate_access_token_self(date(2027, 1, 1))
    assert refused.value.nothing_done
    p.client(API, OLD).instance_metadata()
    assert len(gitlab.seen) == 2
