"""python-gitlab, a real client nobody here wrote, against the fake GitLab."""

from __future__ import annotations

from typing import Any

import gitlab
import pytest
from gitlab.v4.objects import CurrentUserRunnerManager

from tests.fake_gitlab import Fault

from .conftest import World


def client(world: World, token: str = "glpat-admin", **kwargs: Any) -> gitlab.Gitlab:
    return gitlab.Gitlab(world.gl.url, private_token=token, **kwargs)


def test_auth_and_create_user_runner(world: World) -> None:
    gl = client(world, "glpat-owner")
    gl.auth()
    assert gl.user is not None
    assert gl.user.username == "owner"
    runner = gl.user.runners.create(
        {
            "runner_type": "group_type",
            "group_id": 10,
            "description": "pg",
            "tag_list": ["a", "b"],
            "run_untagged": False,
        }
    )
    assert runner.token.startswith("glrt-t2_")
    assert runner.token_expires_at is None
    stored = world.gl.runners[runner.id]
    assert (stored.description, stored.tag_list, stored.run_untagged) == ("pg", ["a", "b"], False)


def test_create_with_create_runner_scope_only(world: World) -> None:
    gl = client(world, "glpat-create")
    with pytest.raises(gitlab.GitlabGetError) as refused:
        gl.auth()  # GET /user needs api, read_api or read_user
    assert refused.value.response_code == 403
    runner = CurrentUserRunnerManager(gl).create({"runner_type": "group_type", "group_id": 10})
    assert world.gl.runner_by_token(runner.token) is not None


def test_create_errors(world: World) -> None:
    gl = client(world, "glpat-gmaint")
    with pytest.raises(gitlab.GitlabCreateError) as forbidden:
        CurrentUserRunnerManager(gl).create({"runner_type": "group_type", "group_id": 10})
    assert forbidden.value.response_code == 403
    assert forbidden.value.error_message == "403 Forbidden - Insufficient permissions"
    with pytest.raises(gitlab.GitlabCreateError) as invalid:
        CurrentUserRunnerManager(gl).create({"runner_type": "nope"})
    assert (invalid.value.response_code, invalid.value.error_message) == (
        400,
        "runner_type does not have a valid value",
    )
    with pytest.raises(gitlab.GitlabAuthenticationError):
        client(world, "glpat-unknown").runners.get(1)


def test_get_save_delete(world: World) -> None:
    created = world.create_runner("glpat-owner", runner_type="group_type", group_id=10)
    gl = client(world, "glpat-owner")
    runner = gl.runners.get(created["id"])
    assert (runner.runner_type, runner.status, runner.paused) == ("group_type", "never_contacted", False)
    runner.description = "saved by python-gitlab"
    runner.tag_list = ["x", "y"]
    runner.paused = True
    runner.save()
    stored = world.gl.runners[created["id"]]
    assert (stored.description, stored.tag_list, stored.paused) == ("saved by python-gitlab", ["x", "y"], True)
    assert (runner.paused, runner.active, runner.status) == (True, False, "never_contacted")  # from the PUT reply
    runner.delete()
    assert created["id"] not in world.gl.runners
    with pytest.raises(gitlab.GitlabGetError) as missing:
        gl.runners.get(created["id"])
    assert (missing.value.response_code, missing.value.error_message) == (404, "404 Runner Not Found")


def test_lists_and_pagination(world: World) -> None:
    ids = [world.gl.create_runner(description=f"r{i}").id for i in range(25)]
    group_runner = world.create_runner("glpat-owner", runner_type="group_type", group_id=10)
    project_runner = world.create_runner("glpat-pmaint", runner_type="project_type", project_id=100)
    gl = client(world)
    everything = gl.runners_all.list(get_all=True, per_page=10)
    assert [r.id for r in everything] == [*ids, group_runner["id"], project_runner["id"]]
    lazy = gl.runners_all.list(iterator=True, per_page=7, type="instance_type")
    assert lazy.total == 25 and lazy.total_pages == 4
    assert [r.id for r in lazy] == ids
    assert [r.id for r in gl.runners.all(scope="specific", get_all=True)] == [group_runner["id"], project_runner["id"]]
    owner = client(world, "glpat-owner")
    assert [r.id for r in owner.runners.list(get_all=True)] == [group_runner["id"], project_runner["id"]]
    project = owner.projects.get(100, lazy=True)
    assert [r.id for r in project.runners.list(get_all=True)][-2:] == [group_runner["id"], project_runner["id"]]
    group = owner.groups.get(10, lazy=True)
    assert len(group.runners.list(get_all=True)) == 26
    with pytest.raises(gitlab.GitlabListError) as denied:
        owner.runners_all.list()
    assert denied.value.response_code == 403


def test_verify_reset_and_managers(world: World) -> None:
    created = world.create_runner()
    gl = client(world)
    gl.runners.verify(created["token"])
    runner = world.gl.runners[created["id"]]
    assert runner.contacted_at is not None
    assert list(runner.managers) == ["<legacy>"]
    managers: Any = gl.http_get(f"/runners/{created['id']}/managers")
    assert isinstance(managers, list)
    assert [(m["system_id"], m["status"]) for m in managers] == [("<legacy>", "online")]

    reset = gl.http_post(f"/runners/{created['id']}/reset_authentication_token")
    assert isinstance(reset, dict)
    assert reset["token"] != created["token"]
    with pytest.raises(gitlab.GitlabVerifyError) as refused:
        gl.runners.verify(created["token"])
    assert refused.value.response_code == 403
    gl.runners.verify(reset["token"])


def test_retries_transient_errors_and_rate_limits(world: World) -> None:
    world.gl.faults.add(Fault(method="POST", path=r"/user/runners$", kind="status", status=503, count=2))
    world.gl.faults.add(Fault(method="GET", path=r"/runners/all$", kind="rate_limit_app", retry_after=0, count=1))
    world.gl.faults.add(Fault(method="GET", path=r"/runners/\d+$", kind="rate_limit_rack", retry_after=0, count=1))
    gl = client(world, retry_transient_errors=True)
    runner = CurrentUserRunnerManager(gl).create({"runner_type": "instance_type"})
    assert len(world.gl.runners) == 1
    assert [c.status for c in world.gl.calls] == [503, 503, 201]
    assert [r.id for r in gl.runners_all.list()] == [runner.id]
    assert gl.runners.get(runner.id).id == runner.id
    assert [c.status for c in world.gl.calls][3:] == [429, 200, 429, 200]


def test_retry_after_dropped_commit_duplicates_the_runner(world: World) -> None:
    """Why the operator must guard POST /user/runners: a blind retry after a lost reply creates a second runner."""
    world.gl.faults.add(Fault(method="POST", path=r"/user/runners$", kind="drop_after_commit", count=1))
    gl = client(world, retry_transient_errors=True)
    CurrentUserRunnerManager(gl).create({"runner_type": "instance_type"})
    assert len(world.gl.runners) == 2
    world.gl.faults.add(Fault(method="POST", path=r"/user/runners$", kind="drop", count=1))
    CurrentUserRunnerManager(gl).create({"runner_type": "instance_type"})
    assert len(world.gl.runners) == 3  # a plain drop is not processed: the retry makes the only one
