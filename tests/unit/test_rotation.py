from __future__ import annotations

from datetime import UTC, datetime, timedelta

from glrt_operator import metrics
from glrt_operator.runners.model import TokenRotation
from glrt_operator.runners.rotation import TokenState, renewal_due_at, rotation_cause
from glrt_operator.runners.status import RunnerStatus


def rotation_reason(
    rotation: TokenRotation, status: RunnerStatus, state: TokenState, now: datetime, uid: str
) -> str | None:
    """The words of the cause, as the TokenRotated Event carries them."""
    cause = rotation_cause(rotation, status, state, now, uid)
    return None if cause is None else cause.text


NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
UID = "0b7c1f7e-1111-4000-8000-000000000000"

S = RunnerStatus.from_dict


def token(lifetime: timedelta | None, age: timedelta = timedelta(0)) -> TokenState:
    obtained = NOW - age
    return TokenState("glrt-secret", obtained + lifetime if lifetime else None, obtained)


def test_token_without_expiry_is_never_renewed() -> None:
    assert renewal_due_at(token(None), timedelta(hours=72), UID) is None
    assert rotation_reason(TokenRotation(), S({}), token(None), NOW, UID) is None


def test_renewal_happens_renew_before_ahead_with_at_most_ten_percent_jitter() -> None:
    state = token(timedelta(days=30))
    due = renewal_due_at(state, timedelta(hours=72), UID)
    assert due is not None and state.expires_at is not None
    assert state.expires_at - timedelta(hours=72 * 1.1) <= due <= state.expires_at - timedelta(hours=72)


def test_a_renew_before_longer_than_the_lifetime_renews_at_two_thirds_of_it() -> None:
    state = token(timedelta(hours=2))  # GitLab's shortest interval, and the default renewBefore of 72h
    due = renewal_due_at(state, timedelta(hours=72), UID)
    assert due is not None and NOW + timedelta(minutes=76) <= due <= NOW + timedelta(minutes=80)
    assert rotation_reason(TokenRotation(), S({}), state, NOW, UID) is None
    assert rotation_reason(TokenRotation(), S({}), state, NOW + timedelta(minutes=80), UID) is not None


def test_jitter_spreads_a_fleet() -> None:
    state = token(timedelta(days=30))
    dues = {renewal_due_at(state, timedelta(hours=72), f"uid-{i}") for i in range(50)}
    assert len(dues) == 50


def test_reasons_in_order_of_precedence() -> None:
    fresh = token(timedelta(days=30))
    interrupted = rotation_reason(TokenRotation(), S({"rotationStartedAt": "x"}), fresh, NOW, UID)
    assert interrupted is not None and "interrupted" in interrupted
    requested = TokenRotation(requested_at="2026-11-22T10:00:00Z")
    reason = rotation_reason(requested, S({"rotationRequestedAt": "2026-11-21T10:00:00Z"}), fresh, NOW, UID)
    assert reason is not None and "requestedAt=2026-11-22T10:00:00Z" in reason
    assert rotation_reason(requested, S({"rotationRequestedAt": "2026-11-22T10:00:00Z"}), fresh, NOW, UID) is None
    expiring = token(timedelta(days=30), age=timedelta(days=29))
    reason = rotation_reason(TokenRotation(), S({}), expiring, NOW, UID)
    assert reason is not None and reason.startswith("the token expires at")


def test_causes_carry_a_metric_reason_from_the_fixed_set() -> None:
    fresh, expiring = token(timedelta(days=30)), token(timedelta(days=30), age=timedelta(days=29))
    requested = TokenRotation(requested_at="2026-11-22T10:00:00Z")
    causes = [
        rotation_cause(TokenRotation(), S({"rotationStartedAt": "x"}), fresh, NOW, UID),
        rotation_cause(requested, S({}), fresh, NOW, UID),
        rotation_cause(TokenRotation(), S({}), expiring, NOW, UID),
    ]
    assert [c.kind if c else None for c in causes] == ["interrupted", "requested", "expiring"]
    assert {c.kind for c in causes if c} <= set(metrics.ROTATION_REASONS)
    assert rotation_cause(TokenRotation(), S({}), fresh, NOW, UID) is None


def test_repr_hides_the_token() -> None:
    assert "glrt-secret" not in repr(token(None))
