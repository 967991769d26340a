"""What kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status, the real library: Flux's health checks) computes for
Runners and DeployTokens, shaped as the operator writes them today and as it should write them
(tests/data/status_shapes.py says what the target is and why).

Today a bad credential is InProgress for ever (Ready=False only, and on a new object no observedGeneration):
Flux waits for its timeout instead of failing at once. The target adds observedGeneration on every status write,
Reconciling=True while a generation is being worked on, Stalled=True (with the failure's reason) when only a
person can fix it; these tests are the contract for it."""

from __future__ import annotations

import json
import subprocess

import pytest

from glrt_operator.core.reasons import RETRYING, Reason
from tests.data import status_shapes
from tests.data.status_shapes import RETRYING_REASONS, STALLED_REASONS, SUCCESS_REASONS, Shape
from tests.harness import binaries, kstatus

ALL = [s for kind in ("Runner", "DeployToken") for s in status_shapes.shapes(kind)]


@pytest.fixture(scope="module")
def computed() -> dict[tuple[str, str], kstatus.Result]:
    """One run of the library over every shape."""
    results = kstatus.compute([s.body for s in ALL])
    return {(s.kind, s.id): r for s, r in zip(ALL, results, strict=True)}


@pytest.mark.parametrize("shape", ALL, ids=lambda s: f"{s.kind}-{s.id}{'' if s.today else '-target'}")
def test_kstatus_status_of_each_shape(shape: Shape, computed: dict[tuple[str, str], kstatus.Result]) -> None:
    result = computed[shape.kind, shape.id]
    assert (result.kind, result.name) == (shape.kind, "builds")
    assert result.status == shape.kstatus, result.message
    if shape.reason is not None:
        # kstatus' Failed carries the Stalled condition: its reason, and its message as the result's message.
        assert result.condition("Stalled") == {
            "type": "Stalled",
            "status": "True",
            "reason": shape.reason,
            "message": status_shapes.BAD_CREDENTIAL,
        }
        assert result.message == status_shapes.BAD_CREDENTIAL


@pytest.mark.parametrize("kind", ["Runner", "DeployToken"])
def test_a_ready_object_is_current(kind: status_shapes.Kind) -> None:
    result = kstatus.compute_one(status_shapes.obj(kind, generation=4, observed=4, conditions=[status_shapes.ready(4)]))
    assert (result.status, result.message) == ("Current", "Resource is Ready")


@pytest.mark.parametrize("kind", ["Runner", "DeployToken"])
def test_right_after_an_edit_the_object_is_in_progress_until_observed(kind: status_shapes.Kind) -> None:
    body = status_shapes.obj(kind, generation=5, observed=4, conditions=[status_shapes.ready(4)])
    result = kstatus.compute_one(body)
    assert result.status == "InProgress"
    assert result.message == f"{kind} generation is 5, but latest observed generation is 4"
    assert result.condition("Reconciling")["reason"] == "LatestGenerationNotObserved"


@pytest.mark.parametrize("kind", ["Runner", "DeployToken"])
def test_bad_credential_fails_only_with_stalled(kind: status_shapes.Kind) -> None:
    """Ready=False alone (today) reads as "still working on it"; Stalled=True (target) as failed, with the reason."""
    not_ready = status_shapes.not_ready("AccessTokenInvalid", status_shapes.BAD_CREDENTIAL, 1)
    today = kstatus.compute_one(status_shapes.obj(kind, generation=1, observed=1, conditions=[not_ready]))
    assert (today.status, today.message) == ("InProgress", status_shapes.BAD_CREDENTIAL)
    assert today.condition("Reconciling")["reason"] == "AccessTokenInvalid"

    stalled = status_shapes.stalled("AccessTokenInvalid", status_shapes.BAD_CREDENTIAL, 1)
    target = kstatus.compute_one(status_shapes.obj(kind, generation=1, observed=1, conditions=[not_ready, stalled]))
    assert (target.status, target.message) == ("Failed", status_shapes.BAD_CREDENTIAL)
    assert target.condition("Stalled")["reason"] == "AccessTokenInvalid"


def test_every_reason_of_the_catalogue_is_either_stalled_or_retrying() -> None:
    """A new reason must be placed: does it pass by itself (Reconciling) or wait for a person (Stalled)? The
    operator's own split (core.reasons.RETRYING) is this one."""
    split = [*STALLED_REASONS, *RETRYING_REASONS, *SUCCESS_REASONS]
    assert len(split) == len(set(split))
    assert sorted({r.value for r in Reason} - set(split)) == []
    assert {r.value for r in RETRYING} == set(RETRYING_REASONS)


@pytest.mark.parametrize("kind", ["Runner", "DeployToken"])
def test_every_reason_of_the_troubleshooting_table_has_its_target(kind: status_shapes.Kind) -> None:
    """Reasons only a person can resolve are Failed; those that pass by themselves stay InProgress."""
    reasons = [*STALLED_REASONS, *RETRYING_REASONS]
    results = kstatus.compute([status_shapes.failure(kind, reason) for reason in reasons])
    got = {reason: result.status for reason, result in zip(reasons, results, strict=True)}
    assert got == {reason: "Failed" if reason in STALLED_REASONS else "InProgress" for reason in reasons}
    for reason, result in zip(reasons, results, strict=True):
        derived = result.condition("Stalled" if reason in STALLED_REASONS else "Reconciling")
        assert derived["reason"] == reason


def test_a_false_stalled_or_reconciling_condition_counts_for_nothing() -> None:
    conditions = [status_shapes.ready(2), status_shapes.resolved("Stalled", 2)]
    conditions.append(status_shapes.resolved("Reconciling", 2))
    body = status_shapes.obj("Runner", generation=2, observed=2, conditions=conditions)
    assert kstatus.compute_one(body).status == "Current"


def test_a_new_object_without_status_is_current_to_kstatus() -> None:
    """kstatus' blind spot: nothing tells it a status is still to come. Only the operator's first write (the target:
    Reconciling=True at once) closes the window in which Flux takes a brand-new Runner for reconciled."""
    result = kstatus.compute_one(status_shapes.obj("Runner", generation=1, observed=None, conditions=None))
    assert (result.status, result.message) == ("Current", "Resource is current")


def test_the_library_reads_a_kubectl_list() -> None:
    """The program takes what `kubectl get runners -o json` prints (a List) as well as an array."""
    ready = [status_shapes.ready(1)]
    items = [status_shapes.obj("Runner", generation=1, observed=1, conditions=ready, name=n) for n in "ab"]
    listing = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    out = subprocess.run(
        [str(binaries.binary("kstatus"))], input=listing, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert [(r["name"], r["status"]) for r in map(json.loads, out.splitlines())] == [("a", "Current"), ("b", "Current")]
