"""What GitOps tools make of Runners and DeployTokens the operator wrote, read back from the API server: kstatus
(sigs.k8s.io/cli-utils, Flux's health checks, the real library) and Argo CD's health checks of
docs/operations/gitops/ run by gopher-lua as Argo CD runs them. A Ready object is Current/Healthy, an object right
after an edit InProgress/Progressing, one with a bad credential Failed/Degraded with the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch

from glrt_operator.core.api import DEPLOY_TOKEN, GROUP, RUNNER, VERSION
from tests.e2e.conftest import PROJECT_ID, Runners
from tests.fake_gitlab import FakeGitLab
from tests.harness import argo_health, kstatus
from tests.harness.operator import OperatorProcess
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = {
    "Runner": ROOT / "docs" / "operations" / "gitops" / "runner-health.lua",
    "DeployToken": ROOT / "docs" / "operations" / "gitops" / "deploytoken-health.lua",
}
DT_PAT = "glpat-e2e-GitOpsDeployTokens"
BAD = "glpat-e2e-NotAValidTokenAtAll"


def judged(obj: dict[str, Any]) -> tuple[str, str, str]:
    """(kstatus status, Argo CD health, kstatus message) of one object as the API server returned it."""
    flux = kstatus.compute_one(obj)
    argo = argo_health.assess_one(SCRIPTS[obj["kind"]], obj)
    return flux.status, argo.status, flux.message


def deploy_token(namespace: str, url: str, name: str, secret: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DeployToken",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "gitlab": {"url": url, "credentialsSecretRef": {"name": secret}},
            "projectId": PROJECT_ID,
            "scopes": ["read_registry"],
            "secret": {"name": f"{name}-pull", "registry": "registry.test"},
        },
    }


def edited_versions(custom: client.CustomObjectsApi, namespace: str, since: str) -> list[dict[str, Any]]:
    """The Runner "builds" as the API server stored it after resourceVersion `since`, up to the first version
    kstatus calls Current."""
    versions: list[dict[str, Any]] = []
    stream = watch.Watch()
    for event in stream.stream(
        custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        RUNNER.plural,
        field_selector="metadata.name=builds",
        resource_version=since,
        timeout_seconds=60,
    ):
        versions.append(event["object"])
        if judged(event["object"])[0] == "Current":
            stream.stop()
    assert versions and judged(versions[-1])[0] == "Current", "the edit was not reconciled within 60 s"
    return versions


def reason_of(obj: dict[str, Any], type_: str) -> str | None:
    return next((c["reason"] for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), None)


def test_kstatus_and_argo_cd_read_the_operators_status(
    kube: client.ApiClient, runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    custom, ns = client.CustomObjectsApi(kube), runners.namespace
    deployer = gitlab.add_user("deployer")
    gitlab.add_project_member(PROJECT_ID, deployer, "maintainer")
    gitlab.add_access_token(DT_PAT, deployer, scopes=["api"])
    runners.put_secret("deploy-api", {"token": DT_PAT})
    runners.put_secret("bad-api", {"token": BAD})

    def get(kind: str, name: str) -> dict[str, Any]:
        plural = RUNNER.plural if kind == "Runner" else DEPLOY_TOKEN.plural
        body: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, ns, plural, name)
        return body

    runners.create(runners.manifest())
    custom.create_namespaced_custom_object(
        GROUP, VERSION, ns, DEPLOY_TOKEN.plural, deploy_token(ns, gitlab.url, "pull", "deploy-api")
    )
    runners.wait_ready()
    wait_for(lambda: reason_of(get("DeployToken", "pull"), "Ready") == "Reconciled", timeout=60, message="Ready")
    for kind, name in (("Runner", "builds"), ("DeployToken", "pull")):
        assert judged(get(kind, name))[:2] == ("Current", "Healthy"), kind

    # Right after an edit: the API server's answer to the edit itself (new generation, the old status).
    edited = custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, RUNNER.plural, "builds", {"spec": {"description": "edited"}}
    )
    assert judged(edited)[:2] == ("InProgress", "Progressing")
    # Every version the operator wrote until the edit is reconciled reads as in progress (an edit is not marked
    # Reconciling: its lagging observedGeneration says so); the first Current one is the reconciled generation.
    versions = edited_versions(custom, ns, edited["metadata"]["resourceVersion"])
    assert [judged(v)[:2] for v in versions[:-1]] == [("InProgress", "Progressing")] * (len(versions) - 1)
    reconciled = versions[-1]
    assert reconciled["status"]["observedGeneration"] == reconciled["metadata"]["generation"] == 2
    edited = custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, DEPLOY_TOKEN.plural, "pull", {"spec": {"scopes": ["read_registry", "read_repository"]}}
    )
    assert judged(edited)[:2] == ("InProgress", "Progressing")
    wait_for(lambda: judged(get("DeployToken", "pull"))[0] == "Current", timeout=60, message="the edit reconciled")

    # A bad credential: only a person can help, and both tools say so at once, with the reason.
    bad = runners.manifest("stuck")
    bad["spec"]["gitlab"]["credentialsSecretRef"] = {"name": "bad-api"}
    runners.create(bad)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, ns, DEPLOY_TOKEN.plural, deploy_token(ns, gitlab.url, "stuck", "bad-api")
    )
    for kind in ("Runner", "DeployToken"):
        obj = wait_for(
            lambda kind=kind: (o := get(kind, "stuck")) and reason_of(o, "Stalled") == "AccessTokenInvalid" and o,
            timeout=60,
            message="Stalled",
        )  # type: ignore[misc]
        flux, argo, message = judged(obj)
        assert (flux, argo) == ("Failed", "Degraded"), kind
        assert "401" in message and "bad-api" in message
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
