from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from glrt_operator.deploytokens.model import DeployTokenSpec
from glrt_operator.runners.model import SpecError


def body(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "gitlab": {"url": "https://gitlab.example.com", "credentialsSecretRef": {"name": "gitlab-api", "key": "token"}},
        "projectId": 7,
        "scopes": ["read_registry"],
        "secret": {
            "name": "registry-pull",
            "type": "kubernetes.io/dockerconfigjson",
            "registry": "registry.example.com",
        },
    }
    spec.update(overrides)
    return {k: v for k, v in spec.items() if v is not None}


def test_defaults_and_fields() -> None:
    spec = DeployTokenSpec.parse(body(scopes=["read_registry", "read_repository", "read_registry"]))
    assert spec.project_id == 7 and spec.group_id is None
    assert spec.scope_path == "projects/7"
    assert spec.scopes == ("read_repository", "read_registry")  # deduplicated, in GitLab's order
    assert (spec.valid_for, spec.renew_before) == (timedelta(hours=720), timedelta(hours=168))
    assert spec.username is None
    assert spec.secret.registry == "registry.example.com"
    assert spec.gitlab.api_url == "https://gitlab.example.com/api/v4"


def test_group_basic_auth_and_durations() -> None:
    spec = DeployTokenSpec.parse(
        body(
            projectId=None,
            groupId=42,
            validFor="48h",
            renewBefore="1h30m",
            username="ci.pull+x",
            secret={"name": "creds", "type": "kubernetes.io/basic-auth"},
        )
    )
    assert spec.scope_path == "groups/42"
    assert (spec.valid_for, spec.renew_before) == (timedelta(hours=48), timedelta(minutes=90))
    assert spec.secret.registry is None and spec.username == "ci.pull+x"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"groupId": 3}, "exactly one of projectId and groupId"),
        ({"projectId": None}, "exactly one of projectId and groupId"),
        ({"projectId": 0}, "positive"),
        ({"scopes": []}, "spec.scopes"),
        ({"scopes": ["api"]}, "spec.scopes"),
        ({"validFor": "30d"}, "spec.validFor"),
        ({"validFor": "0h"}, "longer than zero"),
        ({"validFor": "24h", "renewBefore": "24h"}, "longer than spec.renewBefore"),
        ({"renewBefore": "1w"}, "spec.renewBefore"),
        ({"username": "has space"}, "spec.username"),
        ({"username": "x" * 256}, "spec.username"),
        ({"secret": None}, "spec.secret is required"),
        ({"secret": {"name": "Bad_Name"}}, "spec.secret.name"),
        ({"secret": {"name": "s", "type": "Opaque"}}, "spec.secret.type"),
        ({"secret": {"name": "s"}}, "registry is required"),
        ({"secret": {"name": "s", "registry": "https://r.example.com"}}, "spec.secret.registry"),
        ({"gitlab": {"url": "gitlab.example.com"}}, "spec.gitlab"),
    ],
)
def test_bad_input_names_the_field(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message.replace(".", r"\.").replace("+", r"\+")):
        DeployTokenSpec.parse(body(**overrides))


def test_registry_with_port() -> None:
    spec = DeployTokenSpec.parse(body(secret={"name": "s", "registry": "registry.example.com:5050"}))
    assert spec.secret.type == "kubernetes.io/dockerconfigjson"
    assert spec.secret.registry == "registry.example.com:5050"
