"""GitLab's runner endpoints (https://docs.gitlab.com/api/runners/; creation:
https://docs.gitlab.com/api/users/#create-a-runner-linked-to-a-user)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ...core.gitlab import CreatedRunner, IssuedToken, RunnerDetails, RunnerManager, RunnerSummary
from ...core.times import parse_time
from .session import Session, answer, check_status, json_list

# A system_id no gitlab-runner sends (it only sends `[sr]_` ids): the side-effect-free token check asks for it.
TOKEN_PROBE_SYSTEM_ID = "glrt-operator-token-check"


def _issued(body: Any) -> IssuedToken:
    return IssuedToken(token=str(body["token"]), expires_at=parse_time(body.get("token_expires_at")))


def _manager(item: Any) -> RunnerManager:
    return RunnerManager(
        id=int(item["id"]),
        system_id=str(item["system_id"]),
        status=item.get("status"),
        contacted_at=item.get("contacted_at"),
        version=item.get("version"),
    )


def _summary(item: Any) -> RunnerSummary:
    return RunnerSummary(
        id=int(item["id"]),
        description=str(item.get("description") or ""),
        status=item.get("status"),
        created_at=item.get("created_at"),
    )


class RunnerCalls(Session):
    # --- with the access token ------------------------------------------------------------------------------

    def create_runner(self, attributes: Mapping[str, Any]) -> CreatedRunner:
        """`POST /user/runners`. Not idempotent: the caller persists the result at once."""
        return self._call(
            "POST",
            "/user/runners",
            "create runner",
            lambda body: CreatedRunner(id=int(body["id"]), token=_issued(body)),
            json=dict(attributes),
        )

    def get_runner(self, runner_id: int) -> RunnerDetails | None:
        """`GET /runners/:id`; None when GitLab has no such runner."""
        action = f"read runner {runner_id}"
        response = self._request("GET", f"/runners/{runner_id}", action, params={"include_projects": "false"})
        if response.status_code == 404:
            return None
        return answer(response, action, RunnerDetails.from_json)

    def update_runner(self, runner_id: int, attributes: Mapping[str, Any]) -> RunnerDetails:
        """`PUT /runners/:id`."""
        return self._call(
            "PUT", f"/runners/{runner_id}", f"update runner {runner_id}", RunnerDetails.from_json, json=dict(attributes)
        )

    def delete_runner(self, runner_id: int) -> bool:
        """`DELETE /runners/:id`. False when it was already gone (404 counts as done)."""
        action = f"delete runner {runner_id}"
        response = self._request("DELETE", f"/runners/{runner_id}", action)
        if response.status_code == 404:
            return False
        check_status(response, action)
        return True

    def reset_token(self, runner_id: int) -> IssuedToken:
        """`POST /runners/:id/reset_authentication_token`: works even when the token has expired."""
        path = f"/runners/{runner_id}/reset_authentication_token"
        return self._call("POST", path, f"reset token of runner {runner_id}", _issued)

    def list_managers(self, runner_id: int) -> list[RunnerManager]:
        """`GET /runners/:id/managers` (not paginated)."""
        return self._call(
            "GET",
            f"/runners/{runner_id}/managers",
            f"list managers of runner {runner_id}",
            lambda body: [_manager(m) for m in json_list(body)],
        )

    def list_runners(self, path: str, **filters: str) -> Iterator[RunnerSummary]:
        """Walk a runner list (`/runners/all`, `/groups/:id/runners`, `/projects/:id/runners`)."""
        return self._pages(path, "list runners", _summary, filters)

    # --- with the runner's own token in the body, no access token --------------------------------------------

    def delete_manager(self, runner_token: str, system_id: str) -> bool:
        """`DELETE /runners/managers`. False when GitLab had no such manager."""
        action = f"delete runner manager {system_id}"
        body = {"token": runner_token, "system_id": system_id}
        response = self._request("DELETE", "/runners/managers", action, json=body, user_auth=False)
        if response.status_code == 404:
            return False
        check_status(response, action)
        return True

    def delete_runner_by_token(self, runner_token: str) -> bool:
        """`DELETE /runners` with the runner's own token: the whole runner goes. GitLab answers 403 for a token it
        does not know, which for a runner already deleted means done: returns False then."""
        action = "delete runner by token"
        response = self._request("DELETE", "/runners", action, json={"token": runner_token}, user_auth=False)
        if response.status_code == 403:
            return False
        check_status(response, action)
        return True

    def token_is_valid(self, runner_token: str) -> bool:
        """Does GitLab accept this runner token? Asked without side effects: `DELETE /runners/managers` for a
        system_id no runner sends authenticates the token first (403 when refused) and then finds no manager (404),
        so nothing is deleted. `POST /runners/verify` would instead create a `<legacy>` runner manager."""
        action = "check runner token"
        body = {"token": runner_token, "system_id": TOKEN_PROBE_SYSTEM_ID}
        response = self._request("DELETE", "/runners/managers", action, json=body, user_auth=False)
        if response.status_code == 403:
            return False
        if response.status_code != 404:
            check_status(response, action)
        return True
