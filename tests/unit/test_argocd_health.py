"""The Argo CD health checks of docs/operations/gitops/, run by gopher-lua as Argo CD runs them
(tests/tools/argo-health), agree with kstatus (Flux) on every status shape of tests/data/status_shapes.py:
Current is Healthy, InProgress is Progressing, Failed is Degraded. Two documented differences: a deleting object
is Progressing ("Pending deletion", Argo CD's own rule before any script runs) where kstatus says Terminating, and
an object without any status yet is Progressing where kstatus says Current."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.data import status_shapes
from tests.data.status_shapes import RETRYING_REASONS, STALLED_REASONS, Shape
from tests.harness import argo_health, kstatus

SCRIPTS = {
    "Runner": REPO_ROOT / "docs" / "operations" / "gitops" / "runner-health.lua",
    "DeployToken": REPO_ROOT / "docs" / "operations" / "gitops" / "deploytoken-health.lua",
}
KSTATUS_TO_ARGO = {
    "Current": "Healthy",
    "InProgress": "Progressing",
    "Failed": "Degraded",
    "Terminating": "Progressing",
}
# Where Argo CD's answer is not kstatus' one translated: on purpose (see the module docstring).
ARGO_ONLY = {"new-no-status": ("Progressing", "Waiting for the operator to reconcile the {kind}")}

ALL = [s for kind in ("Runner", "DeployToken") for s in status_shapes.shapes(kind)]


@pytest.fixture(scope="module")
def judged() -> dict[tuple[str, str], tuple[kstatus.Result, argo_health.Health]]:
    """Both tools over every shape, once."""
    flux = dict(zip(((s.kind, s.id) for s in ALL), kstatus.compute([s.body for s in ALL]), strict=True))
    argo: dict[tuple[str, str], argo_health.Health] = {}
    for kind, script in SCRIPTS.items():
        of_kind = [s for s in ALL if s.kind == kind]
        assessed = argo_health.assess(script, [s.body for s in of_kind])
        argo.update(zip(((s.kind, s.id) for s in of_kind), assessed, strict=True))
    return {key: (flux[key], argo[key]) for key in flux}


@pytest.mark.parametrize("shape", ALL, ids=lambda s: f"{s.kind}-{s.id}{'' if s.today else '-target'}")
def test_argo_cd_agrees_with_kstatus(
    shape: Shape, judged: dict[tuple[str, str], tuple[kstatus.Result, argo_health.Health]]
) -> None:
    flux, argo = judged[shape.kind, shape.id]
    assert flux.status == shape.kstatus
    if shape.id in ARGO_ONLY:
        status, message = ARGO_ONLY[shape.id]
        assert (argo.status, argo.message) == (status, message.format(kind=shape.kind))
        return
    assert argo.status == KSTATUS_TO_ARGO[flux.status], argo.message
    if argo.status == "Degraded":
        # Argo CD shows only the message: it leads with the Stalled reason.
        assert argo.message == f"{shape.reason}: {status_shapes.BAD_CREDENTIAL}"
    elif flux.status == "Terminating":
        assert argo.message == "Pending deletion"
    elif argo.status == "Healthy":
        assert argo.message == status_shapes.ready(1, shape.kind)["message"]


@pytest.mark.parametrize("kind", ["Runner", "DeployToken"])
def test_every_reason_of_the_troubleshooting_table_agrees(kind: status_shapes.Kind) -> None:
    reasons = [*STALLED_REASONS, *RETRYING_REASONS]
    bodies = [status_shapes.failure(kind, reason) for reason in reasons]
    flux = [r.status for r in kstatus.compute(bodies)]
    argo = argo_health.assess(SCRIPTS[kind], bodies)
    assert [h.status for h in argo] == [KSTATUS_TO_ARGO[s] for s in flux]
    assert [h.status for h in argo] == ["Degraded" if r in STALLED_REASONS else "Progressing" for r in reasons]
    assert all(h.message.startswith(f"{r}: ") for h, r in zip(argo, reasons, strict=True))


def test_the_generation_message_names_both_generations() -> None:
    body = status_shapes.obj("Runner", generation=5, observed=4, conditions=[status_shapes.ready(4)])
    argo = argo_health.assess_one(SCRIPTS["Runner"], body)
    assert (argo.status, argo.message) == ("Progressing", "Runner generation is 5, but latest observed generation is 4")
    assert kstatus.compute_one(body).message == argo.message


def test_the_runner_reproduces_argo_cd_limits(tmp_path: Path) -> None:
    """The runner behaves as Argo CD's: no standard `string`/`os` libraries unless opened, an invalid status is
    Unknown, a script error is Unknown with the error, a non-table return is an error."""
    body = status_shapes.obj("Runner", generation=1, observed=1, conditions=[status_shapes.ready(1)])
    cases = {
        "invalid.lua": ('return {status = "Fine", message = "x"}', "Unknown", "Lua returned an invalid health status"),
        "nolib.lua": ('return {status = "Healthy", message = string.upper("x")}', "Unknown", "string"),
        "error.lua": ('error("boom")', "Unknown", "boom"),
        "number.lua": ("return 1", "Unknown", "expect table output from Lua script, not number"),
        "fields.lua": (
            'return {status = "Healthy", message = obj.kind .. " " .. obj.metadata.generation .. " " .. '
            '#obj.status.conditions .. " " .. tostring(obj.status.conditions[1].observedGeneration)}',
            "Healthy",
            "Runner 1 1 1",
        ),
    }
    for name, (script, status, message) in cases.items():
        path = tmp_path / name
        path.write_text(script)
        health = argo_health.assess_one(path, body)
        assert health.status == status, (name, health)
        assert message in health.message, (name, health)
