"""GitLab's deploy-token endpoints (https://docs.gitlab.com/api/deploy_tokens/). `scope_path` is `projects/<id>` or
`groups/<id>`: a project needs a Maintainer's token; a group needs Maintainer to read and Owner to create or
revoke; the access token needs scope `api`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from ...core.gitlab import CreatedDeployToken, DeployTokenInfo
from .session import Session, check_status


def _created(body: Any) -> CreatedDeployToken:
    return CreatedDeployToken(info=DeployTokenInfo.from_json(body), token=str(body["token"]))


class DeployTokenCalls(Session):
    def create_deploy_token(
        self, scope_path: str, *, name: str, scopes: Sequence[str], expires_on: date | None, username: str | None
    ) -> CreatedDeployToken:
        """`POST /<scope_path>/deploy_tokens`. Not idempotent, and the only reply holding the token: the caller
        stores it at once. GitLab expires it at 00:00 UTC of `expires_on`."""
        body: dict[str, Any] = {"name": name, "scopes": list(scopes)}
        if expires_on is not None:
            body["expires_at"] = f"{expires_on.isoformat()}T00:00:00Z"
        if username:
            body["username"] = username
        action = f"create deploy token in {scope_path}"
        return self._call("POST", f"/{scope_path}/deploy_tokens", action, _created, json=body)

    def list_deploy_tokens(self, scope_path: str) -> list[DeployTokenInfo]:
        """`GET /<scope_path>/deploy_tokens`, every page, revoked and expired tokens included."""
        action = f"list deploy tokens of {scope_path}"
        return list(self._pages(f"/{scope_path}/deploy_tokens", action, DeployTokenInfo.from_json))

    def revoke_deploy_token(self, scope_path: str, token_id: int) -> bool:
        """`DELETE /<scope_path>/deploy_tokens/:id` revokes the token. False when it was already gone (404)."""
        action = f"revoke deploy token {token_id} of {scope_path}"
        response = self._request("DELETE", f"/{scope_path}/deploy_tokens/{token_id}", action)
        if response.status_code == 404:
            return False
        check_status(response, action)
        return True
