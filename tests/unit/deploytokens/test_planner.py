from __future__ import annotations

from datetime import UTC, datetime, timedelta

from glrt_operator.core.gitlab import DeployTokenInfo
from glrt_operator.deploytokens.planner import (
    CreateReason,
    DeployTokenState,
    Plan,
    Retiring,
    plan,
    to_revoke_on_delete,
)

NAME = "glrt-ci-pull-3f2b9c1e"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
EXPIRES = datetime(2026, 12, 23, tzinfo=UTC)
ISSUED = EXPIRES - timedelta(hours=720)
WEEK = timedelta(hours=168)


def tok(
    token_id: int, *, name: str = NAME, revoked: bool = False, expired: bool = False, expires: datetime | None = EXPIRES
) -> DeployTokenInfo:
    return DeployTokenInfo(token_id, name, f"u{token_id}", expires, revoked, expired, ("read_registry",))


def run(tokens: list[DeployTokenInfo], state: DeployTokenState, now: datetime = NOW) -> Plan:
    return plan(renew_before=WEEK, uid="uid-1", name=NAME, tokens=tokens, state=state, now=now)


def healthy(token_id: int = 1, retiring: tuple[Retiring, ...] = ()) -> DeployTokenState:
    return DeployTokenState(token_id=token_id, issued_at=ISSUED, secret_token_id=token_id, retiring=retiring)


def test_first_create() -> None:
    p = run([], DeployTokenState())
    assert (p.create, p.revoke, p.adopt) == (CreateReason.INITIAL, (), None)


def test_healthy_token_waits_for_its_renewal_time() -> None:
    p = run([tok(1), tok(9, name="someone-else")], healthy())
    assert (p.create, p.revoke) == (None, ())
    assert p.next_check is not None
    assert EXPIRES - WEEK * 1.1 <= p.next_check <= EXPIRES - WEEK


def test_renewal_keeps_the_old_token_for_the_grace_period() -> None:
    now = EXPIRES - WEEK + timedelta(seconds=1)
    p = run([tok(1)], healthy(), now)
    assert p.create is CreateReason.RENEWAL
    assert p.revoke == ()
    assert p.keep_current_until == now + timedelta(minutes=10)
    assert p.next_check == p.keep_current_until


def test_retiring_token_revoked_after_grace_only() -> None:
    state = healthy(2, retiring=(Retiring(1, NOW + timedelta(minutes=5)),))
    before = run([tok(1), tok(2)], state)
    assert before.revoke == () and before.retiring == state.retiring
    assert before.next_check == NOW + timedelta(minutes=5)
    after = run([tok(1), tok(2)], state, NOW + timedelta(minutes=5))
    assert [r.token_id for r in after.revoke] == [1] and after.retiring == ()
    assert after.create is None


def test_retiring_token_already_gone_counts_as_done() -> None:
    state = healthy(2, retiring=(Retiring(1, NOW - timedelta(minutes=1)),))
    p = run([tok(1, revoked=True), tok(2)], state)
    assert p.revoke == () and p.retiring == ()


def test_never_three_active_tokens() -> None:
    now = EXPIRES - WEEK + timedelta(seconds=1)
    state = healthy(2, retiring=(Retiring(1, now + timedelta(minutes=5)),))
    p = run([tok(1), tok(2)], state, now)
    assert p.create is CreateReason.RENEWAL
    assert [(r.token_id, r.why) for r in p.revoke] == [(1, "superseded twice")]


def test_revoked_or_expired_out_of_band_is_reissued() -> None:
    assert run([tok(1, revoked=True)], healthy()).create is CreateReason.REVOKED
    assert run([tok(1, expired=True)], healthy()).create is CreateReason.EXPIRED
    # expired by the clock before GitLab's flag flips (it counts in days)
    assert run([tok(1)], healthy(), EXPIRES).create is CreateReason.EXPIRED
    assert run([], healthy()).create is CreateReason.MISSING
    # a dead token needs no revocation
    assert run([tok(1, revoked=True)], healthy()).revoke == ()


def test_strays_are_revoked_before_creating() -> None:
    # a create whose reply was lost left token 5: its value is unknown, so it goes
    p = run([tok(5)], DeployTokenState())
    assert p.create is CreateReason.INITIAL
    assert [r.token_id for r in p.revoke] == [5]
    # strays beside a healthy token; foreign and dead tokens are left alone
    p = run([tok(1), tok(6), tok(7, revoked=True), tok(8, name="glrt-ci-pull-00000000")], healthy())
    assert [r.token_id for r in p.revoke] == [6] and p.create is None


def test_secret_lost_its_token() -> None:
    """The Secret no longer holds the current token (deleted, edited): a new one, and the current one stays valid
    for the grace period (pods that read the Secret before still use it), never a third."""
    p = run([tok(1)], DeployTokenState(token_id=1, issued_at=ISSUED, secret_token_id=None))
    assert p.create is CreateReason.SECRET_STALE
    assert p.revoke == () and p.keep_current_until == NOW + timedelta(minutes=10)
    retiring = DeployTokenState(
        token_id=1, issued_at=ISSUED, secret_token_id=None, retiring=(Retiring(9, NOW + timedelta(minutes=5)),)
    )
    p = run([tok(1), tok(9)], retiring)
    assert [r.token_id for r in p.revoke] == [9] and p.keep_current_until is not None


def test_crash_after_secret_write_adopts_the_secrets_token() -> None:
    # the Secret holds 2, the status still says 1: 2 is adopted, 1 retires with a grace period
    state = DeployTokenState(token_id=1, issued_at=ISSUED, secret_token_id=2)
    p = run([tok(1), tok(2)], state)
    assert p.adopt == 2
    assert p.create is None and p.revoke == ()
    assert p.retiring == (Retiring(1, NOW + timedelta(minutes=10)),)


def test_secret_naming_a_dead_token_is_not_adopted() -> None:
    state = DeployTokenState(token_id=1, issued_at=ISSUED, secret_token_id=2)
    p = run([tok(1), tok(2, revoked=True)], state)
    assert p.adopt is None and p.create is CreateReason.SECRET_STALE


def test_token_without_expiry_is_never_renewed() -> None:
    p = run([tok(1, expires=None)], healthy())
    assert (p.create, p.next_check) == (None, None)


def test_delete_revokes_every_active_token_of_ours() -> None:
    tokens = [tok(1), tok(2, revoked=True), tok(3), tok(4, name="other"), tok(5, expires=NOW)]
    assert to_revoke_on_delete(NAME, tokens, NOW) == [1, 3]


def test_changed_scopes_or_username_replace_the_token_with_grace() -> None:
    p = plan(renew_before=WEEK, uid="uid-1", name=NAME, tokens=[tok(1)], state=healthy(), now=NOW, scopes=["x"])
    assert p.create is CreateReason.SPEC_CHANGED and p.keep_current_until == NOW + timedelta(minutes=10)
    p = plan(renew_before=WEEK, uid="uid-1", name=NAME, tokens=[tok(1)], state=healthy(), now=NOW, username="u1")
    assert p.create is None  # the same username
    p = plan(renew_before=WEEK, uid="uid-1", name=NAME, tokens=[tok(1)], state=healthy(), now=NOW, username="new")
    assert p.create is CreateReason.SPEC_CHANGED


def test_adopted_token_keeps_its_creation_time_from_the_secret() -> None:
    # a short-lived token adopted after a crash is renewed at two thirds of its life, not at once
    expires = NOW + timedelta(hours=2)
    state = DeployTokenState(token_id=1, issued_at=ISSUED, secret_token_id=2, secret_issued_at=NOW)
    p = run([tok(1), tok(2, expires=expires)], state)
    assert p.adopt == 2 and p.create is None
    assert p.next_check is not None and p.next_check > NOW
