from __future__ import annotations

from dataclasses import replace

from glrt_operator.core.gitlab import RunnerDetails
from glrt_operator.runners.attributes import (
    create_attributes,
    desired_attributes,
    drifted,
    is_owned_by,
    maintenance_note,
    ownership_marker,
)
from glrt_operator.runners.model import RunnerSpec

UID = "7f1c9a2e-0000-4000-8000-000000000001"
SPEC = RunnerSpec.parse(
    {
        "gitlab": {"url": "https://gitlab.example.com", "credentialsSecretRef": {"name": "gitlab-api"}},
        "runnerType": "group_type",
        "groupId": 3,
        "description": "builds",
        "tags": ["linux", "docker"],
        "runUntagged": False,
        "locked": True,
        "maximumTimeout": 3600,
        "maintenanceNote": "team A",
    }
)


def details_matching(spec: RunnerSpec) -> RunnerDetails:
    s = spec.settings
    return RunnerDetails(
        id=1,
        runner_type=spec.runner_type,
        description=s.description,
        paused=s.paused,
        tag_list=tuple(reversed(s.tags)),
        run_untagged=s.run_untagged,
        locked=s.locked,
        access_level=s.access_level,
        maximum_timeout=s.maximum_timeout,
        maintenance_note=maintenance_note(s.maintenance_note, UID),
        status="never_contacted",
        contacted_at=None,
    )


def test_create_carries_scope_and_every_server_side_attribute() -> None:
    body = create_attributes(SPEC, UID)
    assert body["runner_type"] == "group_type" and body["group_id"] == 3 and "project_id" not in body
    assert body["tag_list"] == ["docker", "linux"]
    assert body["run_untagged"] is False and body["locked"] is True and body["paused"] is False
    assert body["access_level"] == "not_protected" and body["maximum_timeout"] == 3600
    assert body["maintenance_note"].startswith("team A\n\n") and is_owned_by(body["maintenance_note"], UID)


def test_create_omits_unset_timeout() -> None:
    spec = replace(SPEC, settings=replace(SPEC.settings, maximum_timeout=None))
    assert "maximum_timeout" not in create_attributes(spec, UID)


def test_marker_identifies_only_its_owner() -> None:
    note = maintenance_note("", UID)
    assert note == ownership_marker(UID)
    assert is_owned_by(note, UID)
    assert not is_owned_by(note, UID.replace("1", "2"))
    assert not is_owned_by(None, UID)
    assert len(ownership_marker(UID)) + 2 <= 124  # fits the reserve the CRD leaves in maintenanceNote


def test_in_step_runner_has_no_drift_whatever_the_tag_order() -> None:
    assert drifted(desired_attributes(SPEC, UID), details_matching(SPEC)) == {}


def test_drift_lists_exactly_the_changed_fields() -> None:
    actual = replace(details_matching(SPEC), description="edited in the UI", paused=True, tag_list=("linux",))
    changes = drifted(desired_attributes(SPEC, UID), actual)
    assert changes == {"description": "builds", "paused": False, "tag_list": ["docker", "linux"]}


def test_hidden_maintenance_note_is_not_drift() -> None:
    actual = replace(details_matching(SPEC), maintenance_note=None)
    assert drifted(desired_attributes(SPEC, UID), actual) == {}
