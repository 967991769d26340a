"""What GitLab should store on the runner (pure): the attributes to create with, and what drifted from them."""

from __future__ import annotations

from typing import Any

from ..core.gitlab import RunnerDetails
from .model import RunnerSpec

MARKER_PREFIX = "Managed by glrt-operator (Runner uid "


def ownership_marker(runner_uid: str) -> str:
    """Appended to the maintenance note: lets a restarted operator recognise a runner it created but whose id it
    never saw (the maintenance note is the one free-text field that does not show in job routing or the UI list)."""
    return f"{MARKER_PREFIX}{runner_uid}). Edit the Runner resource, not this runner."


def maintenance_note(user_note: str, runner_uid: str) -> str:
    marker = ownership_marker(runner_uid)
    return f"{user_note}\n\n{marker}" if user_note else marker


def is_owned_by(note: str | None, runner_uid: str) -> bool:
    return bool(note) and ownership_marker(runner_uid) in (note or "")


def desired_attributes(spec: RunnerSpec, runner_uid: str) -> dict[str, Any]:
    """The editable attributes, as `PUT /runners/:id` takes them."""
    s = spec.settings
    return {
        "description": s.description,
        "paused": s.paused,
        "locked": s.locked,
        "run_untagged": s.run_untagged,
        "tag_list": list(s.tags),
        "access_level": s.access_level,
        "maximum_timeout": s.maximum_timeout,
        "maintenance_note": maintenance_note(s.maintenance_note, runner_uid),
    }


def create_attributes(spec: RunnerSpec, runner_uid: str) -> dict[str, Any]:
    """The body of `POST /user/runners`: the scope plus every server-side attribute."""
    body: dict[str, Any] = {"runner_type": spec.runner_type, **desired_attributes(spec, runner_uid)}
    if spec.project_id is not None:
        body["project_id"] = spec.project_id
    if spec.group_id is not None:
        body["group_id"] = spec.group_id
    if body["maximum_timeout"] is None:
        del body["maximum_timeout"]
    return body


def drifted(desired: dict[str, Any], actual: RunnerDetails) -> dict[str, Any]:
    """The desired attributes whose value GitLab does not hold; empty when in step."""
    current: dict[str, Any] = {
        "description": actual.description,
        "paused": actual.paused,
        "locked": actual.locked,
        "run_untagged": actual.run_untagged,
        "tag_list": sorted(actual.tag_list),
        "access_level": actual.access_level,
        "maximum_timeout": actual.maximum_timeout,
        "maintenance_note": actual.maintenance_note,
    }
    changes = {}
    for key, want in desired.items():
        have = current[key]
        if key == "maintenance_note" and have is None:
            continue  # GitLab hides the note from callers that may not update the runner: nothing to compare
        if have != (sorted(want) if key == "tag_list" else want):
            changes[key] = want
    return changes
