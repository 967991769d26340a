"""End-to-end fixtures: the fake GitLab, the operator as a real process, and a small `Runner` client.

Every test that runs the operator is checked on teardown: nothing the operator printed, posted as an Event or
wrote into a Runner's status may contain a token the fake GitLab issued or the access token."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from glrt_operator.core.api import GROUP, VERSION
from tests.fake_gitlab import FakeGitLab
from tests.harness.conditions import ready_for_generation
from tests.harness.controlplane import ControlPlane
from tests.harness.operator import OperatorProcess
from tests.harness.waiting import wait_for

PLURAL = "runners"
PAT = "glpat-e2e-Acc3ssT0kenForTests"
PROJECT_ID, GROUP_ID = 7, 3


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab().running() as gl:
        owner = gl.add_user("platform")
        gl.add_group(GROUP_ID, "platform", owners=[owner])
        gl.add_project(PROJECT_ID, "builds", group_id=GROUP_ID, maintainers=[owner])
        gl.add_access_token(PAT, owner, scopes=["create_runner", "manage_runner", "read_api"])
        yield gl


class Runners:
    """A thin client for `Runner` objects and their children in one namespace, as the admin."""

    def __init__(self, api: client.ApiClient, namespace: str, gitlab_url: str):
        self.namespace = namespace
        self.gitlab_url = gitlab_url
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)

    def manifest(self, name: str = "builds", **spec: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Runner",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "gitlab": {"url": self.gitlab_url, "credentialsSecretRef": {"name": "gitlab-api"}},
                "runnerType": "project_type",
                "projectId": PROJECT_ID,
                "description": "builds for team A",
                "tags": ["docker", "linux"],
                "runUntagged": False,
                "locked": True,
                "maximumTimeout": 3600,
                "replicas": 2,
            },
        }
        body["spec"].update(spec)
        return body

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, copy.deepcopy(body)
        )
        return result

    def get(self, name: str = "builds") -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        return result

    def patch_spec(self, name: str = "builds", **spec: Any) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec}, _content_type="application/merge-patch+json"
        )

    def delete(self, name: str = "builds") -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def exists(self, name: str = "builds") -> bool:
        try:
            self.get(name)
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def condition(self, name: str = "builds", type_: str = "Ready") -> dict[str, Any]:
        for c in self.get(name).get("status", {}).get("conditions", []):
            if c["type"] == type_:
                return dict(c)
        return {}

    def wait_ready(self, name: str = "builds", timeout: float = 60) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            body = self.get(name)
            return body if ready_for_generation(body) else None

        return wait_for(ready, timeout=timeout, message=f"Runner {name} Ready")

    def wait_reason(self, reason: str, name: str = "builds", timeout: float = 60) -> dict[str, Any]:
        return wait_for(
            lambda: (c := self.condition(name)).get("reason") == reason and c,
            timeout=timeout,
            message=f"Ready condition with reason {reason}",
        )

    def secret_data(self, name: str) -> dict[str, str]:
        secret = self.core.read_namespaced_secret(name, self.namespace)
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    def put_secret(self, name: str, data: dict[str, str]) -> None:
        body = client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data)
        try:
            self.core.create_namespaced_secret(self.namespace, body)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            self.core.replace_namespaced_secret(name, self.namespace, body)

    def events(self) -> list[Any]:
        return list(self.core.list_namespaced_event(self.namespace).items)

    def event_reasons(self) -> list[str]:
        return [e.reason for e in self.events()]


@pytest.fixture
def runners(kube: client.ApiClient, namespace: str, gitlab: FakeGitLab, crd_installed: list[str]) -> Runners:
    r = Runners(kube, namespace, gitlab.url)
    r.put_secret("gitlab-api", {"token": PAT})
    return r


@pytest.fixture
def operator(
    control_plane: ControlPlane, namespace: str, gitlab: FakeGitLab, runners: Runners, tmp_path: Path
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(control_plane.kubeconfig, namespace, tmp_path)
    process.start()
    try:
        yield process
    finally:
        process.stop()
        assert_no_secrets(process.output(), runners, gitlab)


def reads_of(gitlab: FakeGitLab, runner_id: int) -> int:
    """Reads of the runner by reconciles: over REST, or batch reads (GraphQL) that list it."""
    calls = gitlab.calls
    rest = [c for c in calls if c.method == "GET" and c.path.endswith(f"/runners/{runner_id}")]
    return len(rest) + len([c for c in calls if c.method == "POST" and c.path.endswith("/api/graphql")])


def fingerprint(secret: str | None) -> str:
    return hashlib.sha256((secret or "").encode()).hexdigest()[:12]


def assert_same_token(actual: str | None, expected: str | None, what: str) -> None:
    """Token equality whose failure message shows fingerprints, never the tokens (pytest's assertion
    rewriting would print both sides of an `==`)."""
    if not actual or actual != expected:
        raise AssertionError(f"{what}: token sha256 {fingerprint(actual)} != {fingerprint(expected)}")


def issued_secrets(gitlab: FakeGitLab) -> set[str]:
    tokens = {r.token for r in gitlab.runners.values() if r.token} | set(gitlab.revoked_tokens)
    return {t for t in tokens if t} | {PAT}


def assert_no_secrets(operator_output: str, runners: Runners, gitlab: FakeGitLab) -> None:
    """No token in the operator's output, the namespace's Events, or any Runner's status."""
    secrets = issued_secrets(gitlab)
    places = {"operator output": operator_output}
    places["events"] = "\n".join(f"{e.reason} {e.message}" for e in runners.events())
    listing = runners.custom.list_namespaced_custom_object(GROUP, VERSION, runners.namespace, PLURAL)
    places["runner status"] = json.dumps([item.get("status", {}) for item in listing["items"]])
    places["runner metadata"] = json.dumps([item.get("metadata", {}) for item in listing["items"]])
    for where, text in places.items():
        leaked = [s[:9] + "..." for s in secrets if s in text]
        assert not leaked, f"{len(leaked)} secret(s) found in the {where} (prefixes only: {leaked})"
