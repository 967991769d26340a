from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from glrt_operator.runners.model import DEFAULT_RENEW_BEFORE, RunnerSpec, SpecError, parse_duration


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "gitlab": {"url": "https://gitlab.example.com", "credentialsSecretRef": {"name": "gitlab-api"}},
        "runnerType": "project_type",
        "projectId": 7,
    }
    base.update(overrides)
    return base


def test_minimal_spec_gets_gitlab_defaults() -> None:
    parsed = RunnerSpec.parse(spec())
    assert parsed.runner_type == "project_type"
    assert parsed.project_id == 7
    assert parsed.gitlab.credentials.key == "token"
    assert parsed.gitlab.api_url == "https://gitlab.example.com/api/v4"
    assert parsed.settings.run_untagged is True
    assert parsed.settings.access_level == "not_protected"
    assert parsed.replicas == 1
    assert parsed.token_rotation.renew_before == DEFAULT_RENEW_BEFORE
    assert parsed.config.concurrent == 10


def test_full_spec_is_parsed() -> None:
    parsed = RunnerSpec.parse(
        spec(
            description="builds",
            tags=["linux", "docker", "linux"],
            runUntagged=False,
            locked=True,
            paused=True,
            accessLevel="ref_protected",
            maximumTimeout=3600,
            maintenanceNote="owned by team A",
            replicas=3,
            tokenRotation={"requestedAt": "2026-11-22T10:00:00Z", "renewBefore": "1h30m"},
            manager={"image": "gitlab-runner:test", "nodeSelector": {"pool": "ci"}},
            config={"concurrent": 4, "logLevel": "debug", "kubernetes": {"namespace": "jobs", "privileged": True}},
        )
    )
    assert parsed.settings.tags == ("docker", "linux")
    assert parsed.settings.locked and parsed.settings.paused and not parsed.settings.run_untagged
    assert parsed.settings.maximum_timeout == 3600
    assert parsed.token_rotation.requested_at == "2026-11-22T10:00:00Z"
    assert parsed.token_rotation.renew_before == timedelta(hours=1, minutes=30)
    assert parsed.manager.node_selector == {"pool": "ci"}
    assert parsed.config.kubernetes.namespace == "jobs"
    assert parsed.config.kubernetes.privileged is True


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"runnerType": "shared"}, "spec.runnerType: must be one of"),
        ({"projectId": None}, "spec.projectId is required"),
        ({"runnerType": "group_type"}, "spec.groupId is required"),
        ({"groupId": 3}, "spec.groupId is only allowed"),
        ({"runnerType": "instance_type"}, "spec.projectId is only allowed"),
        ({"projectId": "7"}, "spec.projectId: expected int"),
        ({"projectId": True}, "expected a number"),
        ({"runUntagged": False}, "spec.tags: must not be empty"),
        ({"tags": ["a,b"]}, "without commas"),
        ({"tags": [f"t{i}" for i in range(51)]}, "at most 50 tags"),
        ({"maximumTimeout": 599}, "at least 600"),
        ({"accessLevel": "protected"}, "spec.accessLevel"),
        ({"replicas": -1}, "spec.replicas"),
        ({"description": "x" * 1025}, "spec.description"),
        ({"maintenanceNote": "x" * 901}, "spec.maintenanceNote"),
        ({"gitlab": {"url": "gitlab.example.com", "credentialsSecretRef": {"name": "a"}}}, "not an http(s) URL"),
        ({"gitlab": {"url": "https://gitlab.example.com"}}, "credentialsSecretRef is required"),
        ({"tokenRotation": {"renewBefore": "3 days"}}, "not a duration"),
        ({"config": {"concurrent": 0}}, "gitlab-runner refuses 0"),
        ({"config": {"environment": ["NOVALUE"]}}, "NAME=value"),
        ({"config": {"cache": {"type": "ftp"}}}, "s3, gcs, azure"),
    ],
)
def test_bad_input_names_the_field_to_fix(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        RunnerSpec.parse(spec(**overrides))


def test_missing_gitlab_section() -> None:
    with pytest.raises(SpecError, match=r"spec\.gitlab is required"):
        RunnerSpec.parse({"runnerType": "instance_type"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("72h", timedelta(hours=72)), ("90m", timedelta(minutes=90)), ("1h30m15s", timedelta(seconds=5415))],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text, "f") == expected


@pytest.mark.parametrize("text", ["", "1d", "h", "-1h", "1.5h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(SpecError):
        parse_duration(text, "f")
