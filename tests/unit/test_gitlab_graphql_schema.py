"""The GraphQL schema the project keeps (glrt_operator/adapters/gitlab/schema.graphql): it builds, and documents
are checked against it the way GitLab checks them (https://docs.gitlab.com/api/graphql/reference/)."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    build_schema,
    get_named_type,
    parse,
    validate,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

# The batch query of the design (one page of a group's own runners with their managers).
GROUP_RUNNERS_QUERY = """
query GroupRunners($path: ID!, $after: String) {
  group(fullPath: $path) {
    runners(type: GROUP_TYPE, membership: DIRECT, first: 100, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes {
        id description maintenanceNote paused locked runUntagged accessLevel maximumTimeout
        tagList runnerType tokenExpiresAt contactedAt createdAt status
        managers(first: 20) {
          nodes { systemId contactedAt status version revision platformName architectureName ipAddress }
        }
      }
    }
  }
}
"""


@pytest.fixture(scope="module")
def sdl() -> str:
    return resources.files("glrt_operator.adapters.gitlab").joinpath("schema.graphql").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def schema(sdl: str) -> GraphQLSchema:
    return build_schema(sdl)


def errors_of(schema: GraphQLSchema, query: str) -> list[str]:
    return [e.message for e in validate(schema, parse(query))]


def object_type(schema: GraphQLSchema, name: str) -> GraphQLObjectType:
    type_ = schema.get_type(name)
    assert isinstance(type_, GraphQLObjectType), name
    return type_


def test_schema_builds_with_the_entry_points_and_types_the_operator_reads(schema: GraphQLSchema) -> None:
    query = object_type(schema, "Query")
    assert set(query.fields) == {"group", "project", "queryComplexity", "runner", "runners"}
    assert str(query.fields["runner"].args["id"].type) == "CiRunnerID!"
    assert str(query.fields["group"].args["fullPath"].type) == "ID!"
    assert str(query.fields["runners"].type) == "CiRunnerConnection"
    for name in ("Group", "Project"):
        assert str(object_type(schema, name).fields["runners"].type) == "CiRunnerConnection"
    assert set(object_type(schema, "QueryComplexity").fields) == {"score", "limit"}
    assert set(object_type(schema, "PageInfo").fields) == {"hasNextPage", "hasPreviousPage", "startCursor", "endCursor"}
    for connection, edge in (
        ("CiRunnerConnection", "CiRunnerEdge"),
        ("CiRunnerManagerConnection", "CiRunnerManagerEdge"),
    ):
        fields = object_type(schema, connection).fields
        assert set(fields) == {"count", "edges", "nodes", "pageInfo"}
        assert str(fields["count"].type) == "Int!"
        assert str(fields["edges"].type) == f"[{edge}]"
    for scalar in ("CiRunnerID", "CiRunnerManagerID", "Time", "ID"):
        assert schema.get_type(scalar) is not None, scalar


def test_runner_and_manager_fields_match_gitlab(schema: GraphQLSchema) -> None:
    runner = object_type(schema, "CiRunner").fields
    expected = {
        "id": "CiRunnerID!",
        "description": "String",
        "maintenanceNote": "String",
        "paused": "Boolean!",
        "locked": "Boolean",
        "runUntagged": "Boolean!",
        "accessLevel": "CiRunnerAccessLevel!",
        "maximumTimeout": "Int",
        "tagList": "[String!]",
        "runnerType": "CiRunnerType!",
        "tokenExpiresAt": "Time",
        "contactedAt": "Time",
        "createdAt": "Time",
        "status": "CiRunnerStatus!",
        "jobExecutionStatus": "CiRunnerJobExecutionStatus",
        "managers": "CiRunnerManagerConnection",
    }
    assert {name: str(f.type) for name, f in runner.items()} == expected
    assert set(runner["managers"].args) == {"systemId", "status", "first", "last", "after", "before"}
    manager = object_type(schema, "CiRunnerManager").fields
    assert str(manager["systemId"].type) == "String!"
    assert isinstance(manager["status"].type, GraphQLNonNull)
    assert {"platformName", "architectureName", "executorName", "ipAddress", "version", "revision"} <= set(manager)
    # Removed from CiRunner in GitLab 17.0: asked of the managers only.
    assert not {"version", "revision", "platformName", "architectureName", "ipAddress", "executorName"} & set(runner)


def test_enums_and_arguments(schema: GraphQLSchema) -> None:
    def values(name: str) -> set[str]:
        type_ = schema.get_type(name)
        assert isinstance(type_, GraphQLEnumType), name
        return set(type_.values)

    assert values("CiRunnerType") == {"INSTANCE_TYPE", "GROUP_TYPE", "PROJECT_TYPE"}
    assert values("CiRunnerStatus") == {"ONLINE", "OFFLINE", "STALE", "NEVER_CONTACTED"}  # ACTIVE/PAUSED gone (16.0)
    assert values("CiRunnerAccessLevel") == {"NOT_PROTECTED", "REF_PROTECTED"}
    assert values("CiRunnerMembershipFilter") == {"DIRECT", "DESCENDANTS", "ALL_AVAILABLE"}
    assert values("CiRunnerJobExecutionStatus") == {"ACTIVE", "IDLE"}
    assert {"CREATED_DESC", "CONTACTED_ASC"} <= values("CiRunnerSort")
    shared = {"paused", "status", "type", "tagList", "search", "sort", "first", "last", "after", "before"}
    assert set(object_type(schema, "Query").fields["runners"].args) == shared
    assert set(object_type(schema, "Project").fields["runners"].args) == shared
    group_runners = object_type(schema, "Group").fields["runners"].args
    assert set(group_runners) == {*shared, "membership"}
    assert group_runners["membership"].default_value == "DESCENDANTS"  # the resolver's default_value
    assert get_named_type(group_runners["tagList"].type).name == "String"


def test_the_design_batch_query_validates(schema: GraphQLSchema) -> None:
    assert errors_of(schema, GROUP_RUNNERS_QUERY) == []
    assert errors_of(schema, "query { queryComplexity { score limit } }") == []
    by_id = 'query { r1: runner(id: "gid://gitlab/Ci::Runner/1") { id status } project(fullPath: "g/p") { id } }'
    assert errors_of(schema, by_id) == []


def test_a_removed_field_or_an_unknown_argument_fails_validation(schema: GraphQLSchema) -> None:
    assert errors_of(schema, 'query { runner(id: "gid://gitlab/Ci::Runner/1") { version } }') == [
        "Cannot query field 'version' on type 'CiRunner'."
    ]
    unknown_argument = 'query { group(fullPath: "g") { runners(ids: ["1"]) { nodes { id } } } }'
    assert errors_of(schema, unknown_argument) == ["Unknown argument 'ids' on field 'Group.runners'."]
    # membership exists on Group.runners only
    assert errors_of(schema, "query { runners(membership: DIRECT) { count } }") == [
        "Unknown argument 'membership' on field 'Query.runners'."
    ]
    assert errors_of(schema, "query { runners(type: SHARED) { count } }")  # not a CiRunnerType value


def test_the_schema_records_its_source_and_ships_with_the_package(sdl: str) -> None:
    header = sdl.split("\nschema {", 1)[0]
    assert "0016ea0586afbe89b5823f3fc254045ce7115af2" in header
    assert "SUBSET" in header
    package_data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "adapters/gitlab/schema.graphql" in package_data["glrt_operator"]
