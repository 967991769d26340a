"""The operator's GitLab adapter's deploy-token calls against the fake GitLab."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime

import pytest

from glrt_operator.adapters.gitlab import GitLabError, GitLabPool

from .conftest import World


def fp(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


@pytest.fixture
def pool() -> GitLabPool:
    return GitLabPool()


def test_create_list_get_revoke(world: World, pool: GitLabPool) -> None:
    gl = pool.client(world.gl.api_url, "glpat-pmaint")
    created = gl.create_deploy_token(
        "projects/100", name="glrt-ci-pull-1234", scopes=["read_registry"], expires_on=date(2025, 6, 2), username=None
    )
    assert created.token.startswith("gldt-")
    assert created.token not in repr(created) and fp(created.token) not in repr(created)
    assert created.info.expires_at == datetime(2025, 6, 2, tzinfo=UTC)
    assert created.info.username == f"gitlab+deploy-token-{created.info.id}"
    assert created.info.active(world.gl.clock.now())

    (listed,) = gl.list_deploy_tokens("projects/100")
    assert listed == created.info
    assert gl.revoke_deploy_token("projects/100", created.info.id) is True
    (revoked,) = gl.list_deploy_tokens("projects/100")  # the list keeps revoked tokens
    assert revoked.id == created.info.id and revoked.revoked and not revoked.active(world.gl.clock.now())
    assert gl.revoke_deploy_token("projects/100", 999) is False  # gone counts as done


def test_list_walks_every_page(world: World, pool: GitLabPool) -> None:
    for i in range(130):
        world.gl.create_deploy_token(name=f"t{i}", scopes=["read_registry"], group_id=10)
    tokens = pool.client(world.gl.api_url, "glpat-owner").list_deploy_tokens("groups/10")
    assert len({t.id for t in tokens}) == 130


def test_errors_are_classified_without_the_token(world: World, pool: GitLabPool) -> None:
    gl = pool.client(world.gl.api_url, "glpat-gmaint")
    with pytest.raises(GitLabError) as forbidden:
        gl.create_deploy_token("groups/10", name="x", scopes=["read_registry"], expires_on=None, username=None)
    assert (forbidden.value.status, forbidden.value.reason, forbidden.value.retryable) == (
        403,
        "AccessTokenForbidden",
        False,
    )
    assert "glpat" not in str(forbidden.value)
    with pytest.raises(GitLabError) as bad:
        pool.client(world.gl.api_url, "glpat-owner").create_deploy_token(
            "groups/10", name="x", scopes=["read_registry"], expires_on=None, username="bad name"
        )
    assert bad.value.status == 400 and "Username" in str(bad.value)
    assert world.gl.deploy_tokens() == []
