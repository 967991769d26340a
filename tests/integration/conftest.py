"""Fake GitLab fixtures: an empty started server, and a seeded "world" of users, groups, projects and tokens."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.fake_gitlab import Clock, FakeGitLab, User

# A fixed start for the frozen clock of the world fixture.
WORLD_START = datetime(2025, 5, 3, 9, 0, 0, tzinfo=UTC)
# httpx builds (and loads CA certificates into) a new SSL context per client, ~40 ms each; share one.
TLS_CONTEXT = ssl.create_default_context()


@pytest.fixture
def fake_gitlab() -> Iterator[FakeGitLab]:
    """An empty fake GitLab with a real clock, started on a free loopback port."""
    with FakeGitLab().running() as gl:
        yield gl


@dataclass
class World:
    """A seeded fake GitLab (frozen clock at ``WORLD_START``).

    Groups: 10 ``platform`` (owner ``owner``, maintainer ``gmaint``), 11 ``platform/team`` (child of 10).
    Projects: 100 ``web`` in group 11 (maintainer ``pmaint``, developer ``dev``), 200 ``tools`` in group 10.
    Users ``admin`` (administrator) and ``outsider`` (no memberships). Tokens ``glpat-<username>`` have scope
    ``api``; the owner also has ``glpat-create`` (create_runner), ``glpat-manage`` (manage_runner),
    ``glpat-both`` (create_runner, manage_runner), ``glpat-read`` (read_api), ``glpat-expired``, ``glpat-revoked``.
    """

    gl: FakeGitLab
    users: dict[str, User]
    _clients: dict[str | None, httpx.Client] = field(default_factory=dict)
    _extra_clients: list[httpx.Client] = field(default_factory=list)

    def client(self, token: str | None = "glpat-admin", **kwargs: Any) -> httpx.Client:
        """An httpx client on ``/api/v4`` sending ``PRIVATE-TOKEN: token`` (none if ``token`` is ``None``).

        Cached per token when no extra arguments are given.
        """
        if not kwargs and token in self._clients:
            return self._clients[token]
        headers = {"PRIVATE-TOKEN": token} if token else {}
        headers.update(kwargs.pop("headers", {}))
        options: dict[str, Any] = {"base_url": self.gl.api_url, "timeout": 5, "verify": TLS_CONTEXT, **kwargs}
        client = httpx.Client(headers=headers, **options)
        if kwargs or headers.keys() - {"PRIVATE-TOKEN"}:
            self._extra_clients.append(client)
        else:
            self._clients[token] = client
        return client

    def create_runner(self, token: str = "glpat-admin", **body: Any) -> dict[str, Any]:
        """``POST /user/runners`` (default ``instance_type``); asserts 201 and returns the body."""
        body.setdefault("runner_type", "instance_type")
        response = self.client(token).post("/user/runners", json=body)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    def close(self) -> None:
        for client in [*self._clients.values(), *self._extra_clients]:
            client.close()


@pytest.fixture
def world() -> Iterator[World]:
    gl = FakeGitLab(clock=Clock.frozen(WORLD_START))
    names = ("admin", "owner", "gmaint", "pmaint", "dev", "outsider")
    users = {name: gl.add_user(name, admin=name == "admin") for name in names}
    gl.add_group(10, "platform", owners=[users["owner"]], maintainers=[users["gmaint"]])
    gl.add_group(11, "team", parent_id=10, name="Team")
    gl.add_project(100, "web", group_id=11, maintainers=[users["pmaint"]], developers=[users["dev"]])
    gl.add_project(200, "tools", group_id=10)
    for name, user in users.items():
        gl.add_access_token(f"glpat-{name}", user, scopes=["api"])
    owner = users["owner"]
    gl.add_access_token("glpat-create", owner, scopes=["create_runner"])
    gl.add_access_token("glpat-manage", owner, scopes=["manage_runner"])
    gl.add_access_token("glpat-both", owner, scopes=["create_runner", "manage_runner"])
    gl.add_access_token("glpat-read", owner, scopes=["read_api"])
    gl.add_access_token("glpat-expired", owner, scopes=["api"], expires_at=WORLD_START - timedelta(days=1))
    gl.add_access_token("glpat-revoked", owner, scopes=["api"], revoked=True)
    w = World(gl=gl, users=users)
    with gl.running():
        try:
            yield w
        finally:
            w.close()
    assert gl.internal_errors == [], "the fake GitLab failed on some requests"
