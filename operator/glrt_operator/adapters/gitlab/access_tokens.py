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
        Never a rotate path: asking with a revoked token triggers no reuse detection."""
        return self._call("GET", "/personal_access_tokens/self", "read the access token", AccessTokenInfo.from_json)

    def rotate_access_token_self(self, expires_at: date) -> RotatedAccessToken:
        """`POST /personal_access_tokens/self/rotate`: GitLab revokes the calling token at once and answers its
        successor, with `expires_at` always explicit. Not idempotent, and never to be retried with the old token
        (GitLab's reuse detection would revoke the successor): the caller stores the answer before anything else."""
        return self._call(
            "POST",
            "/personal_access_tokens/self/rotate",
            "rotate the access token",
            _rotated,
            json={"expires_at": expires_at.isoformat()},
        )
