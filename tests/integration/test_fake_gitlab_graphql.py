"""The fake GitLab's ``/api/graphql`` over HTTP: pagination, permissions, limits, field visibility, faults and
the call log; then python-gitlab's ``gitlab.GraphQL`` and gql, clients nobody here wrote, against it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import gitlab
import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXTransport

from tests.fake_gitlab import Fault, graphql_api
from tests.fake_gitlab.graphql_api import NOT_AVAILABLE

from .conftest import WORLD_START, World

# The batch query of the design: one page of a group's own runners with their managers.
PAGE = """
    runners(type: GROUP_TYPE, membership: DIRECT, first: 100, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes {
        id description maintenanceNote paused locked runUntagged accessLevel maximumTimeout
        tagList runnerType tokenExpiresAt contactedAt createdAt status
        managers(first: 20) {
          nodes { systemId contactedAt status version revision platformName architectureName ipAddress }
        }
      }
    }"""
GROUP_RUNNERS = f"query GroupRunners($path: ID!, $after: String) {{\n  group(fullPath: $path) {{{PAGE}\n  }}\n}}"
# Its complexity by GitLab's rules: managers (1 + 8 fields) + 1 = 10, x1.2 (first: 20) = 12; nodes 1 + 14 + 12 = 27;
# pageInfo 1 + 2 = 3; runners 27 + 3 + 1 = 31, x2 (first: 100) = 62; group 62 + 1 = 63.
GROUP_RUNNERS_COMPLEXITY = 63
WITH_COMPLEXITY = GROUP_RUNNERS.replace("  group(fullPath", "  queryComplexity { score limit }\n  group(fullPath", 1)


@pytest.fixture
def http(world: World) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=world.gl.url, timeout=5) as client:
        yield client


def post(http: httpx.Client, query: str, variables: dict[str, Any] | None = None, token: str | None = "glpat-admin",
         **kwargs: Any) -> httpx.Response:  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.post("/api/graphql", json={"query": query, "variables": variables or {}}, headers=headers, **kwargs)


def ok(
    http: httpx.Client, query: str, variables: dict[str, Any] | None = None, token: str | None = "glpat-admin"
) -> Any:
    """``data`` of a 200 answer without errors."""
    response = post(http, query, variables, token)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def graphql_calls(world: World) -> list[Any]:
    return [c for c in world.gl.calls if c.path == graphql_api.GRAPHQL_PATH]


def test_pagination_across_250_runners_of_a_group(world: World, http: httpx.Client) -> None:
    own = [world.gl.create_runner("group_type", group_id=10, description=f"r{i}").id for i in range(250)]
    world.gl.create_runner("group_type", group_id=11)  # a subgroup's runner: not DIRECT
    world.gl.create_runner("project_type", project_ids=[200])  # a project's runner: not DIRECT
    world.gl.create_runner("instance_type")
    before = len(world.gl.calls)
    seen: list[str] = []
    pages = []
    after = None
    while True:
        page = ok(http, GROUP_RUNNERS, {"path": "platform", "after": after}, "glpat-owner")["group"]["runners"]
        pages.append(len(page["nodes"]))
        seen += [node["id"] for node in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert pages == [100, 100, 50]
    # CREATED_DESC (GitLab's default): created at the same frozen instant, so newest id first.
    assert seen == [f"gid://gitlab/Ci::Runner/{i}" for i in sorted(own, reverse=True)]
    calls = world.gl.calls[before:]
    assert [(c.method, c.path, c.status, c.user) for c in calls] == [("POST", "/api/graphql", 200, "owner")] * 3

    # first: 500 is cut to 100; count is the whole collection; last/before walk back.
    query = """query($after: String, $before: String, $first: Int, $last: Int) {
      group(fullPath: "platform") { runners(membership: DIRECT, type: GROUP_TYPE, first: $first, last: $last,
        after: $after, before: $before) {
        count pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { cursor node { id } } } } }"""
    big = ok(http, query, {"first": 500})["group"]["runners"]
    assert (big["count"], len(big["edges"]), big["pageInfo"]["hasNextPage"]) == (250, 100, True)
    assert big["pageInfo"]["hasPreviousPage"] is False
    assert big["pageInfo"]["endCursor"] == big["edges"][-1]["cursor"]
    back = ok(http, query, {"last": 10, "before": big["edges"][50]["cursor"]})["group"]["runners"]
    assert [e["node"]["id"] for e in back["edges"]] == [e["node"]["id"] for e in big["edges"][40:50]]
    assert back["pageInfo"]["hasPreviousPage"] is True and back["pageInfo"]["hasNextPage"] is True
    # A deleted runner between pages does not shift the next page (keyset cursors).
    world.gl.delete_runner(int(big["edges"][99]["node"]["id"].rsplit("/", 1)[1]))
    following = ok(http, query, {"first": 5, "after": big["edges"][99]["cursor"]})["group"]["runners"]
    assert following["edges"][0]["node"]["id"] == f"gid://gitlab/Ci::Runner/{sorted(own, reverse=True)[100]}"

    invalid = post(http, query, {"first": 5, "after": "not-a-cursor"}).json()
    assert invalid["data"]["group"]["runners"] is None
    assert invalid["errors"][0]["message"] == "Please provide a valid cursor"


def test_membership_sort_and_filters(world: World, http: httpx.Client) -> None:
    gl = world.gl
    direct = gl.create_runner("group_type", group_id=10, tag_list=["a", "b"], description="alpha").id
    sub = gl.create_runner("group_type", group_id=11, paused=True).id
    proj = gl.create_runner("project_type", project_ids=[100]).id
    gl.create_runner("instance_type")
    gl.create_runner("project_type", project_ids=[])  # an orphan: nobody's
    query = """query($m: CiRunnerMembershipFilter, $paused: Boolean, $tags: [String!], $search: String,
      $type: CiRunnerType, $sort: CiRunnerSort) {
      group(fullPath: "platform") { runners(membership: $m, paused: $paused, tagList: $tags, search: $search,
        type: $type, sort: $sort) { nodes { id } } } }"""

    def ids(**variables: Any) -> list[int]:
        nodes = ok(http, query, variables, "glpat-owner")["group"]["runners"]["nodes"]
        return [int(n["id"].rsplit("/", 1)[1]) for n in nodes]

    assert ids() == [proj, sub, direct]  # DESCENDANTS by default
    assert ids(m="DIRECT") == [direct]
    assert ids(m="DESCENDANTS", type="PROJECT_TYPE") == [proj]
    assert ids(paused=True) == [sub]
    assert ids(tags=["a"]) == [direct] and ids(tags=["a", "c"]) == []
    assert ids(search="ALP") == [direct]  # description, case-insensitive
    sub_runner = gl.runner(sub)
    assert sub_runner is not None
    assert ids(search=sub_runner.token) == [sub]  # the full token
    gl.update_runner(direct, contacted_at=WORLD_START - timedelta(minutes=5))
    gl.update_runner(sub, contacted_at=WORLD_START - timedelta(minutes=50))
    assert ids(sort="CONTACTED_ASC") == [sub, direct, proj]  # never contacted last
    assert ids(sort="CREATED_ASC") == [direct, sub, proj]


def test_entry_points_and_their_permissions(world: World, http: httpx.Client) -> None:
    gl = world.gl
    developer = gl.add_user("gdev")
    gl.add_access_token("glpat-gdev", developer, scopes=["api"])
    gl.add_group(20, "other", owners=[world.users["owner"]], developers=[developer])
    group_runner = gl.create_runner("group_type", group_id=10).id
    project_runner = gl.create_runner("project_type", project_ids=[100]).id
    instance_runner = gl.create_runner("instance_type").id

    everything = "{ runners { count } }"
    assert ok(http, everything)["runners"]["count"] == 3  # administrators only
    refused = post(http, everything, token="glpat-owner").json()
    assert refused["data"] == {"runners": None}
    assert refused["errors"] == [
        {"message": NOT_AVAILABLE, "locations": [{"line": 1, "column": 3}], "path": ["runners"]}
    ]

    def group_ids(path: str, token: str) -> Any:
        body = post(http, f'{{ group(fullPath: "{path}") {{ runners {{ nodes {{ id }} }} }} }}', token=token).json()
        group = body["data"]["group"]
        if group is None or group["runners"] is None:
            return group if group is None else (None, [e["message"] for e in body["errors"]])
        return [int(n["id"].rsplit("/", 1)[1]) for n in group["runners"]["nodes"]]

    assert group_ids("platform", "glpat-owner") == [project_runner, group_runner]
    assert group_ids("platform", "glpat-gmaint") == [project_runner, group_runner]  # Maintainer reads them too
    assert group_ids("other", "glpat-gdev") == (None, [NOT_AVAILABLE])  # a Developer sees the group, no runners
    assert group_ids("platform", "glpat-outsider") is None  # not a member: no group at all
    assert group_ids("platform", None) is None  # anonymous

    def project_ids(token: str | None) -> Any:
        body = post(http, '{ project(fullPath: "platform/team/web") { runners { nodes { id } } } }', token=token)
        project = body.json()["data"]["project"]
        if project is None or project["runners"] is None:
            return project if project is None else (None, [e["message"] for e in body.json()["errors"]])
        return sorted(int(n["id"].rsplit("/", 1)[1]) for n in project["runners"]["nodes"])

    assert project_ids("glpat-pmaint") == [project_runner, instance_runner]  # own + instance, not the group's
    assert project_ids("glpat-dev") == (None, [NOT_AVAILABLE])
    assert project_ids("glpat-outsider") is None

    one = "query($id: CiRunnerID!) { runner(id: $id) { id runnerType } }"

    def runner(runner_id: int, token: str | None) -> Any:
        return ok(http, one, {"id": f"gid://gitlab/Ci::Runner/{runner_id}"}, token)["runner"]

    assert runner(group_runner, "glpat-gmaint") == {
        "id": f"gid://gitlab/Ci::Runner/{group_runner}",
        "runnerType": "GROUP_TYPE",
    }
    assert runner(group_runner, "glpat-outsider") is None
    assert runner(group_runner, "glpat-dev") is None
    assert runner(project_runner, "glpat-pmaint") is not None
    assert runner(instance_runner, "glpat-outsider") is not None  # any signed-in user reads instance runners
    assert runner(instance_runner, None) is None  # runners are never public
    assert runner(9999, "glpat-admin") is None
    malformed = post(http, one, {"id": "gid://gitlab/Project/1"}).json()
    assert "data" not in malformed
    assert "does not represent an instance of Ci::Runner" in malformed["errors"][0]["message"]


def test_field_semantics(world: World, http: httpx.Client) -> None:
    gl = world.gl
    created = gl.create_runner("group_type", group_id=10, description="d", tag_list=["k8s"], maintenance_note="hi")
    instance = gl.create_runner("instance_type", maintenance_note="shared")
    expires = WORLD_START + timedelta(days=30, microseconds=123456)
    gl.update_runner(created.id, token_expires_at=expires, access_level="ref_protected", maximum_timeout=3600)
    gl.update_runner(instance.id, token_expires_at=expires)
    query = "query($id: CiRunnerID!) { runner(id: $id) { maintenanceNote tokenExpiresAt status createdAt } }"

    def fields(runner_id: int, token: str) -> Any:
        return ok(http, query, {"id": f"gid://gitlab/Ci::Runner/{runner_id}"}, token)["runner"]

    # maintenanceNote: callers who may update the runner (group Owner); tokenExpiresAt: who may read its sensitive
    # data (group Maintainer too), for instance runners administrators only.
    assert fields(created.id, "glpat-owner")["maintenanceNote"] == "hi"
    assert fields(created.id, "glpat-gmaint")["maintenanceNote"] is None
    assert fields(created.id, "glpat-gmaint")["tokenExpiresAt"] == "2025-06-02T09:00:00Z"  # Time: whole seconds, Z
    assert fields(instance.id, "glpat-outsider") == {
        "maintenanceNote": None,
        "tokenExpiresAt": None,
        "status": "NEVER_CONTACTED",
        "createdAt": "2025-05-03T09:00:00Z",
    }
    assert fields(instance.id, "glpat-admin")["tokenExpiresAt"] == "2025-06-02T09:00:00Z"

    # status follows the creation state: a verify contacts the runner, only a job request finishes its creation.
    rest = world.client(None)
    info = {
        "version": "18.0.1",
        "revision": "abc",
        "platform": "linux",
        "architecture": "amd64",
        "executor": "kubernetes",
    }
    assert (
        rest.post("/runners/verify", json={"token": created.token, "system_id": "s_one", "info": info}).status_code
        == 200
    )
    assert world.client("glpat-owner").get(f"/runners/{created.id}").json()["status"] == "online"  # REST
    assert fields(created.id, "glpat-owner")["status"] == "NEVER_CONTACTED"
    assert rest.post("/jobs/request", json={"token": created.token, "system_id": "s_one"}).status_code == 204
    gl.clock.advance(3 * 3600)
    second = {"token": created.token, "system_id": "s_two", "info": {"executor": "odd"}}
    assert rest.post("/jobs/request", json=second).status_code == 204
    page = ok(http, GROUP_RUNNERS, {"path": "platform"}, "glpat-owner")["group"]["runners"]["nodes"]
    assert page == [
        {
            "id": f"gid://gitlab/Ci::Runner/{created.id}",
            "description": "d",
            "maintenanceNote": "hi",
            "paused": False,
            "locked": False,
            "runUntagged": True,
            "accessLevel": "REF_PROTECTED",
            "maximumTimeout": 3600,
            "tagList": ["k8s"],
            "runnerType": "GROUP_TYPE",
            "tokenExpiresAt": "2025-06-02T09:00:00Z",
            "contactedAt": "2025-05-03T12:00:00Z",
            "createdAt": "2025-05-03T09:00:00Z",
            "status": "ONLINE",
            "managers": {
                "nodes": [
                    {
                        "systemId": "s_one",
                        "contactedAt": "2025-05-03T09:00:00Z",
                        "status": "OFFLINE",  # three hours ago
                        "version": "18.0.1",
                        "revision": "abc",
                        "platformName": "linux",
                        "architectureName": "amd64",
                        "ipAddress": "127.0.0.1",
                    },
                    {
                        "systemId": "s_two",
                        "contactedAt": "2025-05-03T12:00:00Z",
                        "status": "ONLINE",
                        "version": None,
                        "revision": None,
                        "platformName": None,
                        "architectureName": None,
                        "ipAddress": "127.0.0.1",
                    },
                ]
            },
        }
    ]
    managers = """query($id: CiRunnerID!) { runner(id: $id) { jobExecutionStatus managers(systemId: "s_two") {
      count nodes { id executorName jobExecutionStatus runner { id } } } } }"""
    one = ok(http, managers, {"id": f"gid://gitlab/Ci::Runner/{created.id}"}, "glpat-owner")["runner"]
    assert one["jobExecutionStatus"] == "IDLE"
    manager = one["managers"]["nodes"][0]
    assert one["managers"]["count"] == 1 and manager["id"].startswith("gid://gitlab/Ci::RunnerManager/")
    assert (manager["executorName"], manager["runner"]["id"]) == ("unknown", f"gid://gitlab/Ci::Runner/{created.id}")


def test_complexity_by_gitlab_rules_and_its_limits(world: World, http: httpx.Client) -> None:
    owner = "glpat-owner"
    scored = ok(http, WITH_COMPLEXITY, {"path": "platform"}, owner)["queryComplexity"]
    assert scored == {"score": GROUP_RUNNERS_COMPLEXITY + 3, "limit": 250}  # + queryComplexity { score limit }
    assert ok(http, "{ queryComplexity { limit } }")["queryComplexity"] == {"limit": 300}  # administrators
    assert ok(http, "{ queryComplexity { limit } }", token=None)["queryComplexity"] == {"limit": 200}  # anonymous

    def score(selection: str) -> int:
        return int(ok(http, f"{{ queryComplexity {{ score }} {selection} }}", token=owner)["queryComplexity"]["score"])

    base = score("")
    # runners(first: 100) with one node field: (1 + 1 [nodes{id}] + 1) x 2 = 6; +1 sort, +5 search before doubling.
    group = 'group(fullPath: "platform") { runners(first: 100%s) { nodes { id } } }'
    assert score(group % "") - base == 1 + 6
    assert score(group % ", sort: CONTACTED_ASC") - base == 1 + 8
    assert score(group % ', search: "x", sort: CONTACTED_ASC') - base == 1 + 18
    assert score(group.replace("first: 100", "first: 10") % "") - base == 1 + 3  # 3 x 1.1 = 3.3, truncated
    assert score(group.replace("(first: 100%s)", "")) - base == 1 + 6  # no first counts as 100

    # Four pages of the batch query: 4 x 63 = 252 > 250 for a user, within 300 for an administrator.
    aliases = " ".join(f'g{i}: group(fullPath: "platform") {{ ...page }}' for i in range(4))
    four = f"query Four($after: String) {{ {aliases} }}\nfragment page on Group {{{PAGE}\n}}"
    refused = post(http, four, token=owner).json()
    assert refused == {"errors": [{"message": "Query has complexity of 252, which exceeds max complexity of 250"}]}
    assert set(ok(http, four)) == {"g0", "g1", "g2", "g3"}
    # A multiplex is checked as the sum of its documents.
    batch = [{"query": WITH_COMPLEXITY, "variables": {"path": "platform"}}] * 4
    answers = http.post("/api/graphql", json=batch, headers={"PRIVATE-TOKEN": owner}).json()
    assert (
        answers == [{"errors": [{"message": "Query has complexity of 264, which exceeds max complexity of 250"}]}] * 4
    )
    answers = http.post("/api/graphql", json=batch[:2], headers={"PRIVATE-TOKEN": owner}).json()
    assert [a["data"]["queryComplexity"]["score"] for a in answers] == [66, 66]


def test_depth_limit(world: World, http: httpx.Client) -> None:
    runner = world.gl.create_runner("instance_type").id

    def nested(levels: int) -> str:
        inner = "id"
        for _ in range(levels):
            inner = f"managers(first: 1) {{ nodes {{ runner {{ {inner} }} }} }}"
        return f'{{ runner(id: "gid://gitlab/Ci::Runner/{runner}") {{ {inner} }} }}'

    assert ok(http, nested(6), token="glpat-outsider")["runner"]["managers"]["nodes"] == []  # depth 20
    assert post(http, nested(7), token="glpat-outsider").json() == {
        "errors": [{"message": "Query has depth of 23, which exceeds max depth of 20"}]
    }
    assert post(http, nested(5), token=None).json() == {
        "errors": [{"message": "Query has depth of 17, which exceeds max depth of 15"}]
    }


def test_query_size_validation_errors_and_tokens(world: World, http: httpx.Client) -> None:
    small = "{ queryComplexity { limit } }"
    exactly = small + " " * (10_000 - len(small))
    assert post(http, exactly).status_code == 200
    too_large = post(http, exactly + " ")
    assert (too_large.status_code, too_large.json()) == (422, {"errors": [{"message": "Query too large"}]})
    batch = [{"query": exactly[:6_000]}, {"query": exactly[:4_001]}]
    assert http.post("/api/graphql", json=batch, headers={"PRIVATE-TOKEN": "glpat-admin"}).status_code == 422

    seven_unknown = '{ runner(id: "gid://gitlab/Ci::Runner/1") { version revision a b c d e } }'
    body = post(http, seven_unknown).json()
    assert "data" not in body and len(body["errors"]) == 5  # validation stops at five
    assert body["errors"][0] == {
        "message": "Field 'version' doesn't exist on type 'CiRunner'",
        "locations": [{"line": 1, "column": 45}],
        "extensions": {"code": "undefinedField", "typeName": "CiRunner", "fieldName": "version"},
    }
    unknown_argument = post(http, '{ group(fullPath: "platform") { runners(ids: ["1"]) { count } } }').json()
    assert unknown_argument["errors"][0]["message"] == "Field 'runners' doesn't accept argument 'ids'"
    assert post(http, "{ group(").json()["errors"][0]["message"].startswith("Syntax Error")
    assert post(http, "").json() == {"errors": [{"message": "No query string was present"}]}

    for token in ("glpat-unknown", "glpat-expired", "glpat-revoked", "glpat-create", "glpat-manage"):
        refused = post(http, small, token=token)
        assert (refused.status_code, refused.json()) == (401, {"errors": [{"message": "Invalid token"}]}), token
    assert ok(http, small, token="glpat-read")  # read_api is enough
    assert http.get("/api/graphql", params={"query": small, "private_token": "glpat-read"}).status_code == 200
    assert http.post("/api/graphql", json={"query": small}, headers={"PRIVATE-TOKEN": "glpat-owner"}).status_code == 200
    bad_variables = http.post(
        "/api/graphql", json={"query": small, "variables": "{nope"}, headers={"PRIVATE-TOKEN": "glpat-admin"}
    )
    assert bad_variables.status_code == 422


def test_get_queries_and_the_call_log(world: World, http: httpx.Client) -> None:
    world.gl.create_runner("group_type", group_id=10)
    query = "query One($path: ID!) { group(fullPath: $path) { runners { count } } }"
    answer = http.get(
        "/api/graphql",
        params={"query": query, "variables": json.dumps({"path": "platform"}), "operationName": "One"},
        headers={"PRIVATE-TOKEN": "glpat-owner"},
    )
    assert answer.json() == {"data": {"group": {"runners": {"count": 1}}}}
    post(http, query, {"path": "platform"}, "glpat-owner")
    http.post("/api/graphql", json=[{"query": query, "variables": {"path": "platform"}}] * 3,
              headers={"PRIVATE-TOKEN": "glpat-owner"})  # fmt: skip
    calls = graphql_calls(world)
    # One entry per HTTP request, however many runners or documents it reads; no token in the log.
    assert [(c.method, c.status, c.user) for c in calls] == [("GET", 200, "owner")] + [("POST", 200, "owner")] * 2
    assert calls[0].params == {"operationName": "One"}
    assert "glpat-owner" not in repr(world.gl.calls)


def test_faults_apply_to_graphql(world: World, http: httpx.Client) -> None:
    gl = world.gl
    query = "{ queryComplexity { limit } }"
    gl.faults.add(Fault(path=r"^/api/graphql$", kind="status", status=503, count=1))
    assert post(http, query).status_code == 503
    gl.faults.add(Fault(path=r"^/api/graphql$", kind="rate_limit_rack", count=1))
    limited = post(http, query)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "60")
    gl.faults.add(Fault(path=r"^/api/graphql$", kind="drop", count=1))
    with pytest.raises(httpx.TransportError):
        post(http, query)
    gl.faults.add(Fault(path=r"^/api/graphql$", kind="latency", seconds=0.2, count=1))
    assert post(http, query).status_code == 200
    assert post(http, query).status_code == 200
    assert [(c.status, c.fault) for c in graphql_calls(world)] == [
        (503, "status"),
        (429, "rate_limit_rack"),
        (0, "drop"),
        (200, "latency"),
        (200, None),
    ]
    assert gl.calls[-2].duration >= 0.2


def test_switch_off_or_an_older_schema(world: World, http: httpx.Client) -> None:
    gl = world.gl
    query = '{ runner(id: "gid://gitlab/Ci::Runner/1") { id managers { count } } }'
    graphql_api.configure(gl, enabled=False)
    assert post(http, query).status_code == 404  # a GitLab without the endpoint: the operator falls back to REST
    graphql_api.configure(gl, enabled=True, removed_fields={"CiRunner.managers", "Group.runners(membership)"})
    older = post(http, query).json()
    assert older["errors"][0]["message"] == "Field 'managers' doesn't exist on type 'CiRunner'"
    membership = post(http, '{ group(fullPath: "platform") { runners(membership: DIRECT) { count } } }').json()
    assert membership["errors"][0]["message"] == "Field 'runners' doesn't accept argument 'membership'"
    with pytest.raises(ValueError, match="not in the schema"):
        graphql_api.configure(gl, removed_fields={"CiRunner.nope"})
    control = httpx.Client(base_url=gl.url + "/-/fake", timeout=5)
    with control:
        assert control.get("/graphql").json() == {
            "enabled": True,
            "removed_fields": ["CiRunner.managers", "Group.runners(membership)"],
        }
        assert control.put("/graphql", json={"removed_fields": []}).status_code == 200
        assert control.put("/graphql", json={"enable": False}).status_code == 400
    assert ok(http, query) == {"runner": None}
    graphql_api.configure(gl, enabled=False)
    gl.reset()  # like the faults, the switch goes with a reset
    assert ok(http, query) == {"runner": None}


# python-gitlab 8.6 hands variable_values to gql 4, which still takes them but warns.
@pytest.mark.filterwarnings("ignore:Using variable_values:DeprecationWarning")
def test_python_gitlab_graphql_client(world: World) -> None:
    gl = world.gl
    for i in range(120):
        gl.create_runner("group_type", group_id=10, description=f"r{i}")
    with gitlab.GraphQL(gl.url, token="glpat-owner") as client:
        seen, after = 0, None
        while True:
            result = client.execute(GROUP_RUNNERS, variable_values={"path": "platform", "after": after})
            runners = result["group"]["runners"]
            seen += len(runners["nodes"])
            if not runners["pageInfo"]["hasNextPage"]:
                break
            after = runners["pageInfo"]["endCursor"]
        assert seen == 120
        assert client.execute(WITH_COMPLEXITY, variable_values={"path": "platform"})["queryComplexity"] == {
            "score": GROUP_RUNNERS_COMPLEXITY + 3,
            "limit": 250,
        }
        with pytest.raises(TransportQueryError, match="doesn't exist on type 'CiRunner'"):
            client.execute('{ runner(id: "gid://gitlab/Ci::Runner/1") { version } }')
    # GitLab's 401 carries a GraphQL body, which gql reads as an answer with errors.
    with pytest.raises(TransportQueryError, match="Invalid token"), gitlab.GraphQL(gl.url, token="glpat-no") as refused:
        refused.execute("{ queryComplexity { limit } }")


def test_gql_reads_the_schema_from_the_fake(world: World) -> None:
    """gql introspects the fake (the introspection query passes the limits) and validates client-side."""
    world.gl.create_runner("group_type", group_id=10)
    transport = HTTPXTransport(url=world.gl.url + "/api/graphql", headers={"Authorization": "Bearer glpat-owner"})
    client = Client(transport=transport, fetch_schema_from_transport=True)
    result = client.execute(GraphQLRequest(GROUP_RUNNERS, variable_values={"path": "platform"}))
    assert len(result["group"]["runners"]["nodes"]) == 1
    assert client.schema is not None
    assert "version" not in client.schema.get_type("CiRunner").fields  # type: ignore[union-attr]
