"""The DeployToken CRD refuses bad input at apply time (structural schema and CEL rules on the real apiserver)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from glrt_operator.core.api import GROUP, VERSION

pytestmark = [pytest.mark.cluster, pytest.mark.oldest_kubernetes]

PLURAL = "deploytokens"

GOOD: dict[str, Any] = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "DeployToken",
    "metadata": {"name": "pull"},
    "spec": {
        "gitlab": {"url": "https://gitlab.example.com", "credentialsSecretRef": {"name": "gitlab-api"}},
        "projectId": 7,
        "scopes": ["read_registry"],
        "secret": {"name": "registry-pull", "registry": "registry.example.com"},
    },
}


def create(kube: client.ApiClient, namespace: str, spec_changes: dict[str, Any], drop: tuple[str, ...] = ()) -> Any:
    body = copy.deepcopy(GOOD)
    body["spec"].update(spec_changes)
    for key in drop:
        body["spec"].pop(key)
    return client.CustomObjectsApi(kube).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def test_valid_object_gets_the_defaults(kube: client.ApiClient, namespace: str, crd_installed: list[str]) -> None:
    assert "deploytokens.glrt.dev" in crd_installed
    created = create(kube, namespace, {})
    spec = created["spec"]
    assert (spec["validFor"], spec["renewBefore"], spec["gracePeriod"]) == ("720h", "168h", "10m")
    assert spec["secret"]["type"] == "kubernetes.io/dockerconfigjson"
    assert spec["gitlab"]["credentialsSecretRef"]["key"] == "token"


@pytest.mark.parametrize(
    ("changes", "drop", "message"),
    [
        ({"groupId": 3}, (), "set exactly one of projectId and groupId"),
        ({}, ("projectId",), "set exactly one of projectId and groupId"),
        ({"scopes": ["api"]}, (), "Unsupported value"),
        ({"scopes": []}, (), "should have at least 1 items"),
        ({"validFor": "24h", "renewBefore": "48h"}, (), "validFor must be longer than renewBefore"),
        ({"validFor": "30d"}, (), "spec.validFor"),
        ({"secret": {"name": "s"}}, (), "registry is required for kubernetes.io/dockerconfigjson"),
        ({"secret": {"name": "s", "type": "Opaque"}}, (), "Unsupported value"),
        ({"username": "has space"}, (), "spec.username"),
    ],
)
def test_bad_input_is_refused(
    kube: client.ApiClient,
    namespace: str,
    crd_installed: list[str],
    changes: dict[str, Any],
    drop: tuple[str, ...],
    message: str,
) -> None:
    with pytest.raises(client.ApiException) as refused:
        create(kube, namespace, changes, drop)
    assert refused.value.status == 422
    assert message in str(refused.value.body)


def test_basic_auth_needs_no_registry_and_scope_is_immutable(
    kube: client.ApiClient, namespace: str, crd_installed: list[str]
) -> None:
    create(kube, namespace, {"secret": {"name": "creds", "type": "kubernetes.io/basic-auth"}})
    api = client.CustomObjectsApi(kube)
    with pytest.raises(client.ApiException) as refused:
        api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "pull", {"spec": {"projectId": 8}})
    assert "projectId cannot be changed" in str(refused.value.body)
    for secret in ({"name": "other"}, {"type": "kubernetes.io/dockerconfigjson", "registry": "r.example.com"}):
        with pytest.raises(client.ApiException) as refused:
            api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "pull", {"spec": {"secret": secret}})
        assert "secret.name and secret.type cannot be changed" in str(refused.value.body)


def test_the_example_is_accepted(kube: client.ApiClient, namespace: str, crd_installed: list[str]) -> None:
    body = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "deploytoken.yaml").read_text())
    body["metadata"]["namespace"] = namespace
    created = client.CustomObjectsApi(kube).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert created["spec"]["secret"]["registry"] == "registry.example.com"
