"""Kubernetes refusals become condition messages that name the missing permission and quote no data."""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException

from glrt_operator.adapters.kube import describe_api_error


def api_error(status: int, reason: str, message: str) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps({"kind": "Status", "message": message})
    return exc


def test_forbidden_names_the_rule_to_grant() -> None:
    text = describe_api_error(
        api_error(403, "Forbidden", 'secrets "x" is forbidden: User "system:serviceaccount:ops:op" cannot create')
    )
    assert text.startswith('Kubernetes answered 403 Forbidden: secrets "x" is forbidden')
    assert "Grant the operator's ServiceAccount" in text


def test_other_bodies_are_not_quoted() -> None:
    text = describe_api_error(api_error(422, "Unprocessable Entity", "data[token]: Invalid value: glrt-secret"))
    assert text == "Kubernetes answered 422 Unprocessable Entity"


def test_unparsable_body() -> None:
    exc = ApiException(status=404, reason="Not Found")
    exc.body = "<html>"
    assert describe_api_error(exc) == "Kubernetes answered 404 Not Found"
