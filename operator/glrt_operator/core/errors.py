"""The one error a use case raises to say why a resource cannot be reconciled now; the handlers turn it into a
condition, an Event and Kopf's retry semantics."""

from __future__ import annotations


class ReconcileError(Exception):
    """Why a resource cannot be reconciled now. `permanent`: nothing changes until the resource itself is edited.
    Otherwise retry after `delay` seconds (GitLab's Retry-After when it sent one)."""

    def __init__(self, reason: str, message: str, *, permanent: bool = False, delay: float | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.permanent = permanent
        self.delay = delay
