"""Every GraphQL document the operator sends (adapters.gitlab.graphql) is valid against the schema the project keeps
(schema.graphql, GitLab's types and fields) and within GitLab's limits: complexity 250 for an authenticated user,
depth 20, 10,000 characters (https://docs.gitlab.com/api/graphql/#limits)."""

from __future__ import annotations

from importlib import resources

import pytest
from graphql import build_schema, parse, validate

from glrt_operator.adapters.gitlab.graphql import DOCUMENTS, batched_runner
from tests.fake_gitlab.graphql_api import complexity

SCHEMA = build_schema(resources.files("glrt_operator.adapters.gitlab").joinpath("schema.graphql").read_text())


@pytest.mark.parametrize("runner_type", sorted(DOCUMENTS))
def test_each_document_is_valid_and_within_gitlabs_limits(runner_type: str) -> None:
    text = DOCUMENTS[runner_type]
    document = parse(text)
    assert validate(SCHEMA, document) == []
    variables = {"after": None} if runner_type == "instance_type" else {"after": None, "path": "platform/web"}
    score, depth = complexity(SCHEMA, document, None, variables)
    assert 0 < score <= 250 and 0 < depth <= 20
    assert len(text) < 10_000


def test_a_field_gitlab_removed_is_refused_by_the_schema() -> None:
    # The check is not vacuous: CiRunner.version went in GitLab 17.0 (read managers' versions instead).
    bad = DOCUMENTS["group_type"].replace("contactedAt status\n", "contactedAt status version\n", 1)
    assert bad != DOCUMENTS["group_type"] and validate(SCHEMA, parse(bad))


def test_a_node_reads_as_the_rest_shapes() -> None:
    node = {
        "id": "gid://gitlab/Ci::Runner/42",
        "description": "builds",
        "maintenanceNote": "note",
        "paused": False,
        "locked": True,
        "runUntagged": False,
        "accessLevel": "REF_PROTECTED",
        "maximumTimeout": 3600,
        "tagList": ["b", "a"],
        "runnerType": "GROUP_TYPE",
        "contactedAt": None,
        "status": "ONLINE",
        "managers": {
            "pageInfo": {"hasNextPage": False},
            "nodes": [{"id": "gid://gitlab/Ci::RunnerManager/7", "systemId": "r_x", "status": "OFFLINE"}],
        },
    }
    found = batched_runner(node)
    assert (found.details.id, found.details.access_level, found.details.runner_type) == (
        42,
        "ref_protected",
        "group_type",
    )
    assert found.details.tag_list == ("a", "b") and found.details.maximum_timeout == 3600
    assert found.managers is not None
    assert [(m.id, m.system_id, m.status) for m in found.managers] == [(7, "r_x", "offline")]
    # More managers than a page: left to REST.
    more = batched_runner({**node, "managers": {"pageInfo": {"hasNextPage": True}, "nodes": []}})
    assert more.managers is None
