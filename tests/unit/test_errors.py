"""The one classification point: every exception becomes a reason, a message that says what to fix and retry
semantics; messages of unknown exceptions are never quoted (they may carry data)."""

from __future__ import annotations

import ssl
from datetime import timedelta

import pytest

from glrt_operator.core.errors import ReconcileError, classify, redact


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_overflow_is_permanent_and_says_what_to_fix() -> None:
    try:
        timedelta(hours=10**20)
    except OverflowError as exc:
        error = classify(exc)
    assert (error.reason, error.permanent) == ("ValueOutOfRange", True) and "realistic value" in error.message


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (UnicodeEncodeError("latin-1", "\ufeff", 0, 1, "x"), "InvalidCharacters"),
        (ssl.SSLError(1, "bad"), "TLSError"),
        (KeyError("glpat-secret-value"), "UnexpectedError"),
    ],
)
def test_generic_failures(exc: BaseException, reason: str) -> None:
    error = classify(raised(exc))
    assert error.reason == reason and not error.permanent and "glpat-secret" not in error.message


def test_an_unexpected_error_names_type_and_place_only() -> None:
    error = classify(raised(RuntimeError("token=glrt-abcdefghij")))
    assert error.message.startswith("Unexpected RuntimeError at test_errors.py:")
    assert "glrt-" not in error.message


def test_a_reconcile_error_is_itself() -> None:
    error = ReconcileError("X", "y", transient=True)
    assert classify(error) is error


def test_redact() -> None:
    text = redact("Invalid value: glrt-t3_AbCdEf123456 and glpat-xyzxyzxyz1 and token: 0123456789abcdef")
    assert "AbCdEf" not in text and "xyzxyz" not in text and "0123456789" not in text
    assert redact('metadata.name: Invalid value: "a.b"') == 'metadata.name: Invalid value: "a.b"'
