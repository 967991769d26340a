"""A lean slice of the bad-input corpus (tests/data/bad_inputs.py, `E2E`) against the real apiserver and the
operator as a process: what the CRD can refuse is refused at apply time with the apiserver's message; the rest ends
in a Ready=False condition with the expected reason and a message, with no traceback in the operator's log, few
GitLab calls, and every Runner deletable. `make chaos` runs the whole corpus."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.data.bad_inputs import CORPUS, E2E, by_id
from tests.e2e.conftest import Runners
from tests.fake_gitlab import FakeGitLab
from tests.harness.bad_inputs import Outcome, apply, calls_by_user, delete_all, prepare, runner_name, wait_conditions
from tests.harness.impostor import Impostor
from tests.harness.operator import OperatorProcess

pytestmark = pytest.mark.cluster


@pytest.fixture
def impostor() -> Iterator[Impostor]:
    with Impostor().running() as server:
        yield server


@pytest.mark.oldest_kubernetes
def test_every_apply_time_entry_is_refused_by_the_apiserver(runners: Runners, gitlab: FakeGitLab) -> None:
    """The whole apply-time part of the corpus: one API call each, no operator needed."""
    with Impostor().running() as impostor:
        refused: dict[str, str] = {}
        for bad in (b for b in CORPUS if b.expect == "apply"):
            body, _ = prepare(bad, runners, gitlab, impostor)
            outcome = Outcome(bad, runner_name(bad))
            apply(bad, body, runners, outcome)
            if outcome.created:
                runners.delete(outcome.name)
            refused[bad.id] = outcome.refused_at_apply or "ACCEPTED"
    accepted = sorted(k for k, v in refused.items() if v == "ACCEPTED")
    assert accepted == []
    assert "metadata.name" in refused["name-dot"] and "tags" in refused["tag-trailing-space"]


def test_the_slice_ends_in_conditions_without_tracebacks_and_deletes(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess, impostor: Impostor
) -> None:
    slice_ = [by_id(i) for i in E2E if by_id(i).expect == "condition"]
    assert len(slice_) >= 5
    outcomes = []
    users: dict[str, str | None] = {}
    start = len(gitlab.calls)
    for bad in slice_:
        body, user = prepare(bad, runners, gitlab, impostor)
        outcome = Outcome(bad, runner_name(bad))
        apply(bad, body, runners, outcome)
        users[outcome.name] = user
        outcomes.append(outcome)
    wait_conditions(outcomes, runners, timeout=60)
    wrong = {o.bad.id: o.reason for o in outcomes if not o.ok}
    assert wrong == {}
    per_user = calls_by_user(gitlab, start)
    # Back-off, no hot loop: the test operator's back-off is 0.5 s doubling to 4 s.
    assert all(per_user[u] <= 40 for u in users.values() if u), per_user
    delete_all(outcomes, runners, timeout=60)
    assert [o.name for o in outcomes if not o.deleted] == []
    assert gitlab.runners == {}
    log = operator.output()
    assert "Traceback" not in log
