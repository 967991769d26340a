"""The operator's own access token and the instance it talks to: `GET /metadata` (https://docs.gitlab.com/api/metadata/),
`GET /personal_access_tokens/self` and `POST /personal_access_tokens/self/rotate`
(https://docs.gitlab.com/api/personal_access_tokens/)."""

from __future__ import annotations

from datetime import date
from typing import Any

from ...core.gitlab import ACCESS_TOKEN_PREFIX, AccessTokenInfo, InstanceInfo, RotatedAccessToken, usable_token
from .session import Session, answer


def _rotated(body: Any) -> RotatedAccessToken:
    return RotatedAccessToken(
        info=AccessTokenInfo.from_json(body), token=usable_token(body["token"], ACCESS_TOKEN_PREFIX)
    )


class AccessTokenCalls(Session):
    def instance_metadata(self) -> InstanceInfo:
        """`GET /metadata` (15.2+); `GET /version` on an older GitLab (404 for /metadata)."""
        response = self._request("GET", "/metadata", "read GitLab's version")
        if response.status_code == 404:
            response = self._request("GET", "/version", "read GitLab's version")
        return answer(response, "read GitLab's version", InstanceInfo.from_json)

    def access_token_self(self) -> AccessTokenInfo:
        """`GET /personal_access_tokens/self` (15.5+): any scope; 401 when the token is unknown, expired or revoked.
        Never a rotate path: asking with a revoked token triggers no reuse detection. Sent even while a rotation
        of the token is in doubt, and a 200 settles that doubt (the token is still active)."""
        action = "read the access token"
        response = self._request("GET", "/personal_access_tokens/self", action, settles_doubt=True)
        info = answer(response, action, AccessTokenInfo.from_json)
        if self._credential is not None:
            self._credential.settled()
        return info

    def current_token(self) -> str:
        """The token this client sends now: the Secret's, or its successor once this process rotated it."""
        return self._credential.token if self._credential is not None else self._access_token

    def rotate_access_token_self(self, expires_at: date) -> RotatedAccessToken:
        """`POST /personal_access_tokens/self/rotate`: GitLab revokes the calling token at once and answers its
        successor, with `expires_at` always explicit. Not idempotent, and never to be retried with the old token
        (GitLab's reuse detection would revoke the successor): the caller stores the answer before anything else.
        Sent with the credential held exclusively: no request of this process carries the old token after it."""
        action = "rotate the access token"
        body = {"expires_at": expires_at.isoformat()}

        def call(token: str) -> RotatedAccessToken:
            path = "/personal_access_tokens/self/rotate"
            return answer(self._send("POST", path, action, token, json=body), action, _rotated)

        if self._credential is None:
            return call(self._access_token)
        return self._credential.rotate(action, call)

    def access_token(self, token_id: int) -> AccessTokenInfo | None:
        """`GET /personal_access_tokens/:id` (15.1+): a token of the caller's own user (any user's for an
        administrator); None when GitLab does not show it (401 for another user's, 404 for an unknown id)."""
        response = self._request("GET", f"/personal_access_tokens/{token_id}", "read an access token by id")
        if response.status_code in (401, 404):
            return None
        return answer(response, "read an access token by id", AccessTokenInfo.from_json)

    def active_access_tokens(self, user_id: int, name: str) -> list[AccessTokenInfo]:
        """`GET /personal_access_tokens?user_id=&state=active&search=` (15.5+ filters): the active tokens of the
        user whose name contains `name` (GitLab's search is a substring match: the caller compares names)."""
        params = {"user_id": str(user_id), "state": "active", "search": name}
        return list(self._pages("/personal_access_tokens", "list access tokens", AccessTokenInfo.from_json, params))

    def rotate_access_token(self, token_id: int, expires_at: date) -> RotatedAccessToken:
        """`POST /personal_access_tokens/:id/rotate` (16.0; `expires_at` 16.6) with this client's own token (scope
        api, the same user or an administrator): revokes token `token_id` and answers its successor. Presents only
        this client's token, never the one rotated, so GitLab's reuse detection cannot fire for the rotated one."""
        return self._call(
            "POST",
            f"/personal_access_tokens/{token_id}/rotate",
            "rotate an access token by id",
            _rotated,
            json={"expires_at": expires_at.isoformat()},
        )
