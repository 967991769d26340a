"""The one error a use case raises to say why a resource cannot be reconciled now, and the one place that turns
any other failure into it. The handlers turn a ReconcileError into a condition, an Event and Kopf's retry
semantics; nothing reaches Kopf as a bare exception (Kopf would log a traceback and retry blindly every 60 s).

Each adapter registers a classifier for its own exceptions (GitLab's HTTP errors and garbage, Kubernetes API
errors); the generic Python failures a spec value or a Secret can cause are classified here.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .reasons import Reason

# Secrets must never reach a condition through a quoted message: GitLab's token prefixes
# (https://docs.gitlab.com/security/tokens/#token-prefixes), and anything following a `token` key.
_SECRET_LIKE = re.compile(r"\b(gl[a-z]{1,6}-|GR1348941)[\w.-]{6,}|(?i:token)(\W{1,4})[\w.-]{8,}")


class ReconcileError(Exception):
    """Why a resource cannot be reconciled now. `permanent`: nothing changes until the resource itself is edited.
    Otherwise retry after `delay` seconds (GitLab's Retry-After when it sent one). `transient`: the same call may
    well succeed by itself in a moment (a dropped connection, a 5xx, a 429), so a periodic resync retries soon
    before it reports the problem."""

    def __init__(
        self,
        reason: Reason,
        message: str,
        *,
        permanent: bool = False,
        delay: float | None = None,
        transient: bool = False,
    ):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.permanent = permanent
        self.delay = delay
        self.transient = transient


Classifier = Callable[[BaseException], ReconcileError | None]
_classifiers: list[Classifier] = []


def register_classifier(classifier: Classifier) -> Classifier:
    """An adapter's classifier of its own exceptions (returns None for exceptions it does not know)."""
    _classifiers.append(classifier)
    return classifier


def redact(text: str) -> str:
    """`text` with anything shaped like a token replaced: for messages quoted from another system."""
    return _SECRET_LIKE.sub(lambda m: (m.group(1) or "token" + (m.group(2) or "")) + "<redacted>", text)


def where(exc: BaseException) -> str:
    """The innermost frame of `exc` as `module.py:line`: enough to find a bug, without a traceback (whose
    exception messages and reprs could carry submitted data) in the log."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    return f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"


def classify(exc: BaseException) -> ReconcileError:
    """Every failure as a ReconcileError: a reason, a message that says what to fix, and how to retry."""
    if isinstance(exc, ReconcileError):
        return exc
    for classifier in _classifiers:
        found = classifier(exc)
        if found is not None:
            return found
    if isinstance(exc, OverflowError):
        return ReconcileError(
            Reason.VALUE_OUT_OF_RANGE,
            "A number or duration in the spec is too large to compute with: use a realistic value "
            "(durations in hours, at most a few years).",
            permanent=True,
        )
    if isinstance(exc, UnicodeError):
        return ReconcileError(
            Reason.INVALID_CHARACTERS,
            "A value read from the spec or a Secret holds characters that cannot be encoded (a byte-order mark, "
            "a control or non-ASCII character): re-create it as plain text.",
        )
    if isinstance(exc, ssl.SSLError):
        return ReconcileError(
            Reason.TLS_ERROR, f"TLS failed ({type(exc).__name__}): check spec.gitlab.url and spec.gitlab.caSecretRef."
        )
    # A bug, not bad input: the type and the place, never the message (it may quote data), with back-off.
    return ReconcileError(
        Reason.UNEXPECTED_ERROR,
        f"Unexpected {type(exc).__name__} at {where(exc)}; retrying with back-off. If it persists, report it "
        "with this message.",
    )


# Turns a failure the caller knows better (a GitLab error, say) into a ReconcileError with hints naming the
# resource's own fields; None leaves it to `classify`.
Explain = Callable[[BaseException], ReconcileError | None]


@contextmanager
def failures_explained(explain: Explain) -> Iterator[None]:
    """Every failure inside the block as a ReconcileError: `explain`'s, else `classify`'s. The one place a use case
    turns exceptions into what a condition shows."""
    try:
        yield
    except ReconcileError:
        raise
    except Exception as exc:  # the one classification point
        raise (explain(exc) or classify(exc)) from None
