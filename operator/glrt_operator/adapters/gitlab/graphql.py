"""Batch reads of runners through GitLab's GraphQL API (https://docs.gitlab.com/api/graphql/reference/): one paged
query per owner (a project's, a group's or the instance's runners), 100 runners a page with their managers, instead
of two REST calls per runner. Every document here is validated against `schema.graphql` in the unit tier.

Anything that says GraphQL cannot serve the read (404: no endpoint; 401/403: a token without `read_api`; a
validation error: an older schema; the owner null: not readable with this token) raises `BatchReadUnavailable`, and
the use cases fall back to REST. A 429 or 5xx is a GitLabError like any other call's."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from ...core.gitlab import BatchedRunner, BatchReadUnavailable, RunnerDetails, RunnerManager, UnusableAnswer
from .session import MAX_PAGES, Session, answer, check_status, parse_answer

RUNNER_FRAGMENT = """
fragment GlrtRunner on CiRunner {
  id description maintenanceNote paused locked runUntagged accessLevel maximumTimeout tagList runnerType
  contactedAt status
  managers(first: 50) { pageInfo { hasNextPage } nodes { id systemId contactedAt status version } }
}
"""
_PAGE = "first: 100, after: $after) { pageInfo { hasNextPage endCursor } nodes { ...GlrtRunner } }"
PROJECT_RUNNERS = (
    "query GlrtProjectRunners($path: ID!, $after: String) {\n"
    f"  project(fullPath: $path) {{ runners(type: PROJECT_TYPE, {_PAGE} }}\n}}\n" + RUNNER_FRAGMENT
)
GROUP_RUNNERS = (
    "query GlrtGroupRunners($path: ID!, $after: String) {\n"
    f"  group(fullPath: $path) {{ runners(type: GROUP_TYPE, membership: DIRECT, {_PAGE} }}\n}}\n" + RUNNER_FRAGMENT
)
INSTANCE_RUNNERS = (
    f"query GlrtInstanceRunners($after: String) {{\n  runners(type: INSTANCE_TYPE, {_PAGE}\n}}\n" + RUNNER_FRAGMENT
)
DOCUMENTS = {"project_type": PROJECT_RUNNERS, "group_type": GROUP_RUNNERS, "instance_type": INSTANCE_RUNNERS}
# GraphQL's HTTP answers that mean "not here, not with this token": fall back to REST.
_UNAVAILABLE = (401, 403, 404, 422)


def _number(global_id: Any) -> int:
    """`gid://gitlab/Ci::Runner/42` -> 42."""
    match = re.fullmatch(r"gid://gitlab/[A-Za-z:]+/(\d+)", str(global_id))
    if match is None:
        raise UnusableAnswer(f"not a GitLab global id: {str(global_id)[:60]!r}")
    return int(match[1])


def _lower(value: Any) -> str | None:
    return str(value).lower() if value is not None else None


def batched_runner(node: Mapping[str, Any]) -> BatchedRunner:
    """A `CiRunner` node as the REST shapes the drift check reads (GraphQL's enums are upper case)."""
    details = RunnerDetails(
        id=_number(node["id"]),
        runner_type=str(_lower(node.get("runnerType")) or ""),
        description=str(node.get("description") or ""),
        paused=bool(node.get("paused")),
        tag_list=tuple(sorted(node.get("tagList") or ())),
        run_untagged=bool(node.get("runUntagged", True)),
        locked=bool(node.get("locked", False)),
        access_level=str(_lower(node.get("accessLevel")) or "not_protected"),
        maximum_timeout=int(node["maximumTimeout"]) if node.get("maximumTimeout") is not None else None,
        maintenance_note=node.get("maintenanceNote"),
        status=_lower(node.get("status")),
        contacted_at=node.get("contactedAt"),
    )
    managers = tuple(
        RunnerManager(
            id=_number(m["id"]),
            system_id=str(m["systemId"]),
            status=_lower(m.get("status")),
            contacted_at=m.get("contactedAt"),
            version=m.get("version"),
        )
        for m in (node.get("managers") or {}).get("nodes") or ()
    )
    # More managers than one page holds (over 50 replicas): read them over REST (`runners.batch`).
    complete = not ((node.get("managers") or {}).get("pageInfo") or {}).get("hasNextPage")
    return BatchedRunner(details, managers if complete else None)


class GraphQLCalls(Session):
    def owner_path(self, runner_type: str, owner_id: int) -> str:
        """The full path GraphQL names a project or group by (`GET /projects/:id`, `GET /groups/:id`)."""
        if runner_type == "project_type":
            path, key = f"/projects/{owner_id}", "path_with_namespace"
        else:
            path, key = f"/groups/{owner_id}", "full_path"
        action = f"read the path of {runner_type.removesuffix('_type')} {owner_id}"
        response = self._request("GET", path, action)
        if response.status_code in _UNAVAILABLE:
            raise BatchReadUnavailable(f"{action}: GitLab answered {response.status_code}")
        return answer(response, action, lambda body: str(body[key]))

    def batch_runners(self, runner_type: str, owner_path: str | None) -> Iterator[BatchedRunner]:
        """Every runner of the owner, page by page (at most MAX_PAGES pages of 100)."""
        document = DOCUMENTS[runner_type]
        owner = {"project_type": "project", "group_type": "group"}.get(runner_type)
        after: str | None = None
        for _ in range(MAX_PAGES):
            variables: dict[str, Any] = {"after": after}
            if owner is not None:
                variables["path"] = owner_path
            page = self._graphql(document, variables, owner)
            yield from (batched_runner(node) for node in page["nodes"])
            info = page["pageInfo"]
            if not info.get("hasNextPage"):
                return
            after = str(info["endCursor"])

    def _graphql(self, document: str, variables: Mapping[str, Any], owner: str | None) -> Any:
        """One page: the `runners` connection of the answer; BatchReadUnavailable when GraphQL cannot serve it."""
        action = "read runners (GraphQL)"
        response = self._request(
            "POST", "/graphql", action, json={"query": document, "variables": dict(variables)}, url=self.graphql_url
        )
        if response.status_code in _UNAVAILABLE:
            raise BatchReadUnavailable(f"GitLab's GraphQL API answered {response.status_code}")
        body = parse_answer(check_status(response, action), action, dict)
        data = body.get("data") or {}
        root = data.get(owner) if owner is not None else data
        connection = (root or {}).get("runners")
        if body.get("errors") or connection is None:
            first = (body.get("errors") or [{}])[0]
            raise BatchReadUnavailable(
                f"GitLab's GraphQL API cannot list these runners: {str(first.get('message'))[:200]}"
            )
        return parse_answer(response, action, lambda _: _page(connection))


def _page(connection: Any) -> dict[str, Any]:
    if not isinstance(connection.get("nodes"), list) or not isinstance(connection.get("pageInfo"), dict):
        raise UnusableAnswer("a runner connection without nodes or pageInfo")
    return dict(connection)
