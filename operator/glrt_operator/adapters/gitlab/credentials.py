"""The access tokens of the operator's process, one holder per token family: every client asks its holder for the
token at send time, so no call is ever sent with a token this process has seen rotated.

GitLab revokes a token the instant it answers its rotation (POST .../self/rotate), with no grace period. A Runner or
DeployToken reconcile that read the old token from the connection's Secret a moment earlier would otherwise send
with it after the rotation: a 401, and a call with a revoked token. So:
- a request holds its credential shared, for the time of the one HTTP call, and sends the holder's current token;
- a rotation holds it exclusively: it waits for the requests in flight to finish, holds new ones back, sends the
  rotate with the current token and, on GitLab's answer, makes the new token the current one before it lets them
  go. The successor is known in memory from the instant GitLab answered, before the Secret is written;
- a client made from the old token afterwards (read from the Secret before the write) gets the same holder, whose
  token is the successor;
- a rotation whose outcome is unknown (a lost answer) leaves the holder in doubt: requests are refused without
  being sent, until `GET /personal_access_tokens/self` (never a rotate path) shows the token still active.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from ...core.gitlab import GitLabError, RotatedAccessToken
from ...core.reasons import Reason

T = TypeVar("T")
# How long a request waits for a rotation of its token to finish (the rotate call itself, bounded by its timeout).
WAIT_FOR_ROTATION = 60.0


def _digest(api_url: str, token: str) -> tuple[str, str]:
    return api_url.rstrip("/"), hashlib.sha256(token.encode()).hexdigest()


class Credential:
    """One token family of one GitLab, as this process knows it: the current token and who is using it."""

    def __init__(self, registry: CredentialRegistry, api_url: str, token: str):
        self._registry = registry
        self._api_url = api_url
        self._token = token
        self._cond = threading.Condition()
        self._sending = 0
        self._rotating = False
        self._in_doubt = False

    def __repr__(self) -> str:  # never the token
        return f"Credential({self._api_url!r}, in_doubt={self._in_doubt})"

    @property
    def token(self) -> str:
        with self._cond:
            return self._token

    def _wait_for_rotation(self, action: str) -> None:
        if not self._cond.wait_for(lambda: not self._rotating, WAIT_FOR_ROTATION):
            raise GitLabError(
                f"{action}: not sent, the access token is being rotated (waited {WAIT_FOR_ROTATION:.0f} s)",
                retryable=True,
                kind=Reason.TOKEN_ROTATING,
            )

    @contextmanager
    def sending(self, action: str, *, settles_doubt: bool = False) -> Iterator[str]:
        """The current token, held shared for one call. `settles_doubt`: the call is `GET .../self`, which may
        be sent while a rotation is in doubt (it is never a rotate path)."""
        with self._cond:
            self._wait_for_rotation(action)
            if self._in_doubt and not settles_doubt:
                raise GitLabError(
                    f"{action}: not sent, a rotation of the access token was not confirmed; the connection's next "
                    "reconcile settles it",
                    retryable=True,
                    kind=Reason.TOKEN_ROTATING,
                )
            self._sending += 1
            token = self._token
        try:
            yield token
        finally:
            with self._cond:
                self._sending -= 1
                self._cond.notify_all()

    def settled(self) -> None:
        """GitLab accepted the current token on `GET .../self`: whatever rotation was in doubt never happened."""
        with self._cond:
            self._in_doubt = False

    def rotate(self, action: str, call: Callable[[str], RotatedAccessToken]) -> RotatedAccessToken:
        """`call(current token)` with the credential held exclusively; its answer's token becomes the current one
        (and a name for this holder) before any other request of the family is sent."""
        with self._cond:
            self._wait_for_rotation(action)
            self._rotating = True
            self._cond.wait_for(lambda: self._sending == 0)
            old = self._token
        try:
            rotated = call(old)
        except GitLabError as exc:
            if not exc.nothing_done:
                with self._cond:
                    self._in_doubt = True
            raise
        except BaseException:
            with self._cond:
                self._in_doubt = True
            raise
        else:
            self._registry.adopt(self, self._api_url, rotated.token)
            with self._cond:
                self._token = rotated.token
                self._in_doubt = False
            return rotated
        finally:
            with self._cond:
                self._rotating = False
                self._cond.notify_all()


class CredentialRegistry:
    """The holders of the process, by GitLab API URL and token digest (a rotated token's digest names the holder
    of its family); shared by every view of the pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders: dict[tuple[str, str], Credential] = {}

    def get(self, api_url: str, token: str) -> Credential:
        key = _digest(api_url, token)
        with self._lock:
            holder = self._holders.get(key)
            if holder is None:
                holder = self._holders[key] = Credential(self, api_url, token)
            return holder

    def adopt(self, holder: Credential, api_url: str, token: str) -> None:
        with self._lock:
            self._holders[_digest(api_url, token)] = holder
