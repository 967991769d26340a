"""How long each runner manager is blind after a token reset, read from the fake GitLab's call log.

After a reset GitLab refuses the old token at once (403 on ``POST /jobs/request``); a replica sees again once it
polls with the new one (201/204). Its blackout is the time from its first refused poll to its first accepted poll
after that; a replica that picked up the new token before its next poll was never refused: 0 s."""

from __future__ import annotations

from datetime import UTC, datetime

from kubernetes import client

from tests.fake_gitlab import FakeGitLab

ACCEPTED = (201, 204)


def good_polls_after(gitlab: FakeGitLab, since: datetime, system_ids: set[str]) -> dict[str, float]:
    """``{system_id: seconds after since}`` of the first accepted ``POST /jobs/request`` per manager.

    After a reset the old token is refused (403), so an accepted poll proves the manager uses the new token."""
    first: dict[str, float] = {}
    for call in gitlab.calls:
        sid = call.params.get("system_id")
        if (
            call.path.endswith("/jobs/request")
            and call.status in ACCEPTED
            and call.time >= since
            and sid in system_ids
            and sid not in first
        ):
            first[sid] = (call.time - since).total_seconds()
    return first


def blackouts(gitlab: FakeGitLab, since: datetime, system_ids: set[str]) -> dict[str, float]:
    """``{system_id: seconds}`` from the first refused poll after ``since`` to the first accepted one after it
    (0 when none was refused); only managers that have polled successfully since are listed."""
    refused: dict[str, datetime] = {}
    result: dict[str, float] = {}
    for call in gitlab.calls:
        sid = call.params.get("system_id")
        if not call.path.endswith("/jobs/request") or call.time < since or sid not in system_ids or sid in result:
            continue
        if call.status == 403:
            refused.setdefault(sid, call.time)
        elif call.status in ACCEPTED:
            result[sid] = (call.time - refused[sid]).total_seconds() if sid in refused else 0.0
    return result


def reset_times(gitlab: FakeGitLab) -> list[datetime]:
    """When GitLab answered each token reset (``POST /runners/:id/reset_authentication_token``), oldest first:
    from that instant the old token is refused."""
    return [c.time for c in gitlab.calls if c.path.endswith("/reset_authentication_token") and c.status == 201]


def pods_settled(core: client.CoreV1Api, namespace: str, seconds: float) -> bool:
    """Every pod of ``namespace`` Ready for at least ``seconds``. The kubelet syncs a new pod several times while
    its probes settle, refreshing its Secret volumes each time: a rotation measured before that would look fast
    whatever the operator does."""
    now = datetime.now(UTC)
    pods = core.list_namespaced_pod(namespace).items
    ready = [c for p in pods for c in p.status.conditions or [] if c.type == "Ready" and c.status == "True"]
    return len(ready) == len(pods) > 0 and all((now - c.last_transition_time).total_seconds() >= seconds for c in ready)
