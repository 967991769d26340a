"""The typed status of a `DeployToken`, and the one way to turn changes of it into a status patch.

Field names are the snake_case of the CRD's status properties (a test checks that the CRD declares every one:
the apiserver would silently prune an undeclared field). Times are RFC 3339 strings, as stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypedDict

from ..core.conditions import Condition
from ..core.status import TypedStatus
from ..core.times import iso, parse_time
from .planner import DeployTokenState, Retiring


class RetiringStatus(TypedDict):
    """A superseded token kept valid until `revokeAt` (one `status.retiring[]` entry)."""

    tokenId: int
    revokeAt: str


@dataclass(frozen=True)
class DeployTokenStatus(TypedStatus):
    LIST_FIELDS = frozenset({"retiring", "conditions"})

    observed_generation: int | None = None
    # The last generation the event handlers reconciled (until then the periodic resyncs leave it to them).
    reconciled_generation: int | None = None
    token_id: int | None = None
    username: str | None = None
    expires_at: str | None = None
    renewal_time: str | None = None
    # When the current token was created: GitLab does not list it, and it caps the renewal window.
    issued_at: str | None = None
    # Fence of `POST .../deploy_tokens`: set just before it, cleared once the token is recorded.
    creation_started_at: str | None = None
    retiring: tuple[RetiringStatus, ...] = ()
    # The checksum of the credential the operator wrote into the Secret (builders.checksum): an edit shows.
    secret_checksum: str | None = None
    # renewBefore was not shorter than the lifetime GitLab gave the token: it renews at two thirds of it.
    renewal_fallback: bool | None = None
    # Namespaces holding a copy of the Secret (recorded before each is written: the deletion removes them).
    copies: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()

    def planner_state(self, secret_token_id: int | None, secret_issued_at: str | None) -> DeployTokenState:
        """What the planner needs: this status plus what the Secret says it holds."""
        return DeployTokenState(
            token_id=self.token_id,
            issued_at=parse_time(self.issued_at),
            secret_token_id=secret_token_id,
            secret_issued_at=parse_time(secret_issued_at),
            retiring=tuple(
                Retiring(int(r["tokenId"]), revoke_at)
                for r in self.retiring
                if (revoke_at := parse_time(r["revokeAt"])) is not None
            ),
        )

    def next_check(self) -> datetime | None:
        """When this status says to look again (renewal or the end of a grace period): the renewal daemon's first
        wait after an operator restart."""
        times = [parse_time(self.renewal_time), *(parse_time(r["revokeAt"]) for r in self.retiring)]
        known = [t for t in times if t is not None]
        return min(known) if known else None


def retiring_status(retiring: tuple[Retiring, ...]) -> tuple[RetiringStatus, ...]:
    """The status entries; `revokeAt` rounded up to the second the status stores, so no grace period is cut."""
    return tuple(RetiringStatus(tokenId=r.token_id, revokeAt=iso(_ceil(r.revoke_at)) or "") for r in retiring)


def _ceil(value: datetime) -> datetime:
    return value if not value.microsecond else value.replace(microsecond=0) + timedelta(seconds=1)
