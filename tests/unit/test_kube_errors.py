"""Kubernetes refusals become condition messages that quote the apiserver (never a token) and say what to fix."""

from __future__ import annotations

import json

import urllib3
from kubernetes.client.exceptions import ApiException

from glrt_operator.adapters.kube import describe_api_error
from glrt_operator.core.errors import classify


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


def test_invalid_quotes_the_apiserver_with_tokens_redacted() -> None:
    message = 'StatefulSet.apps "a.b" is invalid: metadata.name: Invalid value: "a.b": a lowercase RFC 1123 label'
    text = describe_api_error(api_error(422, "Unprocessable Entity", message))
    assert text.startswith(f"Kubernetes answered 422 Unprocessable Entity: {message}.")
    assert "metadata.name" in text.split(message)[1]  # and says what to fix
    leaky = describe_api_error(api_error(422, "Unprocessable Entity", "data[x]: Invalid value: glrt-s3cr3tT0ken"))
    assert "s3cr3t" not in leaky and "<redacted>" in leaky


def test_every_kube_failure_is_classified() -> None:
    invalid = classify(api_error(422, "Unprocessable Entity", "bad"))
    assert (invalid.reason, invalid.permanent) == ("KubernetesAPIError", True)
    down = classify(urllib3.exceptions.MaxRetryError(None, "/api", "refused"))  # type: ignore[arg-type]
    assert (down.reason, down.permanent) == ("KubernetesUnreachable", False)


def test_unparsable_body() -> None:
    exc = ApiException(status=404, reason="Not Found")
    exc.body = "<html>"
    assert describe_api_error(exc) == "Kubernetes answered 404 Not Found"
