"""spec.gitlab.connectionRef: Runners and DeployTokens reach GitLab through a GitLabConnection of their namespace or
a ClusterGitLabConnection that allows it; a reference that cannot be used is a condition naming both, and nothing
reaches GitLab."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest

from glrt_operator.core.api import CLUSTER_GITLAB_CONNECTION, GITLAB_CONNECTION
from glrt_operator.core.connection import ConnectionPolicy
from glrt_operator.core.errors import ReconcileError
from glrt_operator.core.reasons import Reason
from glrt_operator.deploytokens.context import DeployTokenRef
from glrt_operator.deploytokens.reconcile import open_context as open_deploy_token
from glrt_operator.deploytokens.reconcile import reconcile as reconcile_deploy_token
from glrt_operator.runners import builders

from .conftest import CA_PEM, NAMESPACE, Env

CONNECTIONS_NS = "glrt-system"
POLICY = ConnectionPolicy(secret_namespace=CONNECTIONS_NS)
LOG = logging.getLogger("tests.reconcile.connections")


def cluster_connection(env: Env, name: str = "main", **allowed: Any) -> None:
    env.kube.objects[(CLUSTER_GITLAB_CONNECTION.plural, None, name)] = {
        "spec": {
            "url": env.gitlab.url,
            "credentialsSecretRef": {"name": "gitlab-admin", "key": "token"},
            "allowedNamespaces": allowed or {"names": [NAMESPACE]},
        }
    }
    secret = {"annotations": {}, "data": {"token": "glpat-api"}, "owners": []}
    env.kube.secrets[f"{CONNECTIONS_NS}/gitlab-admin"] = secret


def refer(env: Env, kind: str = "ClusterGitLabConnection", name: str = "main") -> None:
    env.spec["gitlab"] = {"connectionRef": {"kind": kind, "name": name}}
    env.settings = replace(env.settings, connections=POLICY)
    env.kube.secrets.pop("gitlab-api", None)  # the namespace holds no GitLab credential


def refused(env: Env) -> ReconcileError:
    with pytest.raises(ReconcileError) as caught:
        env.reconcile()
    assert env.gitlab.calls == []  # nothing reached GitLab
    assert env.posts() == 0
    return caught.value


def test_cluster_connection_serves_an_allowed_namespace_without_credentials(env: Env) -> None:
    cluster_connection(env)
    refer(env)
    outcome = env.reconcile()
    assert env.posts() == 1
    assert env.gitlab.runner(outcome.runner_id) is not None
    assert "gitlab-api" not in env.kube.secrets
    assert (CLUSTER_GITLAB_CONNECTION.plural, None, "main") in env.kube.object_reads


def test_namespaced_connection_uses_its_namespace_secret(env: Env) -> None:
    env.kube.objects[(GITLAB_CONNECTION.plural, NAMESPACE, "team")] = {
        "spec": {"url": env.gitlab.url, "credentialsSecretRef": {"name": "team-token"}}
    }
    refer(env, "GitLabConnection", "team")
    env.kube.put_secret("team-token", {"token": "glpat-api"})
    env.reconcile()
    assert env.posts() == 1


def test_namespace_selected_by_labels(env: Env) -> None:
    cluster_connection(env, selector={"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]})
    refer(env)
    env.kube.labels[NAMESPACE] = {"team": "c"}
    exc = refused(env)
    assert exc.reason == Reason.CONNECTION_NOT_ALLOWED
    env.kube.labels[NAMESPACE] = {"team": "b"}
    env.reconcile()
    assert env.posts() == 1


def test_namespace_not_allowed_names_both_and_sends_nothing(env: Env) -> None:
    cluster_connection(env, names=["team-a", "team-b"])
    refer(env)
    exc = refused(env)
    assert exc.reason == Reason.CONNECTION_NOT_ALLOWED
    assert "ClusterGitLabConnection 'main'" in exc.message and f"namespace {NAMESPACE!r}" in exc.message
    assert "allowedNamespaces" in exc.message


def test_missing_connection_and_wrong_kind(env: Env) -> None:
    cluster_connection(env)
    refer(env, "GitLabConnection", "main")  # a ClusterGitLabConnection of that name exists, not this kind
    exc = refused(env)
    assert exc.reason == Reason.CONNECTION_NOT_FOUND
    assert "GitLabConnection 'main'" in exc.message and f"namespace {NAMESPACE!r}" in exc.message
    assert "ClusterGitLabConnection is a different kind" in exc.message
    refer(env, "ClusterGitLabConnection", "absent")
    assert refused(env).reason == Reason.CONNECTION_NOT_FOUND


def test_missing_secret_names_connection_and_namespaces(env: Env) -> None:
    cluster_connection(env)
    refer(env)
    del env.kube.secrets[f"{CONNECTIONS_NS}/gitlab-admin"]
    exc = refused(env)
    assert exc.reason == Reason.CREDENTIALS_MISSING
    assert f"namespace {CONNECTIONS_NS!r}" in exc.message
    assert "ClusterGitLabConnection 'main'" in exc.message and f"namespace {NAMESPACE!r}" in exc.message


def test_cluster_connection_secrets_only_in_the_configured_namespace(env: Env) -> None:
    """Without a configured namespace no ClusterGitLabConnection is usable, and the Secret is never looked up
    elsewhere (not in the Runner's namespace, where a tenant could plant one)."""
    cluster_connection(env)
    refer(env)
    env.kube.put_secret("gitlab-admin", {"token": "glpat-api"})  # planted in the tenant's namespace
    env.settings = replace(env.settings, connections=ConnectionPolicy(secret_namespace=None))
    exc = refused(env)
    assert exc.reason == Reason.CONNECTION_INVALID and "connections.secretNamespace" in exc.message


def test_connection_with_invalid_spec(env: Env) -> None:
    cluster_connection(env)
    env.kube.objects[(CLUSTER_GITLAB_CONNECTION.plural, None, "main")]["spec"]["url"] = "gitlab.example.com"
    refer(env)
    exc = refused(env)
    assert exc.reason == Reason.CONNECTION_INVALID and "ClusterGitLabConnection.spec.url" in exc.message


def test_cluster_connection_ca_reaches_the_client_and_the_pods_through_a_copy(env: Env) -> None:
    """A pod mounts Secrets of its own namespace only: the CA of a ClusterGitLabConnection (in the operator's
    Secret namespace) reaches the manager pods as a copy in the Runner's config Secret."""
    cluster_connection(env)
    env.kube.objects[(CLUSTER_GITLAB_CONNECTION.plural, None, "main")]["spec"]["caSecretRef"] = {"name": "ca"}
    env.kube.secrets[f"{CONNECTIONS_NS}/ca"] = {"annotations": {}, "data": {"ca.crt": CA_PEM}, "owners": []}
    refer(env)
    env.reconcile()
    assert env.pool.requests and all(ca == CA_PEM for _, _, ca in env.pool.requests)
    config = env.kube.secrets["builds-runner-config"]["data"]
    assert config[builders.CA_COPY_KEY] == CA_PEM
    assert f'tls-ca-file = "{builders.CA_FILE}"' in config["config.toml"]
    volumes = env.kube.statefulsets["builds"]["spec"]["template"]["spec"]["volumes"]
    ca = next(v for v in volumes if v["name"] == "ca")
    assert ca["secret"]["secretName"] == "builds-runner-config"
    assert ca["secret"]["items"] == [{"key": builders.CA_COPY_KEY, "path": "ca.crt"}]
    assert "ca" not in env.kube.secrets  # nothing planted in the tenant's namespace under the CA's name

    # The CA renewed in its Secret: the copy follows with the next reconcile.
    env.kube.secrets[f"{CONNECTIONS_NS}/ca"]["data"]["ca.crt"] = CA_PEM + CA_PEM
    env.reconcile()
    assert env.kube.secrets["builds-runner-config"]["data"][builders.CA_COPY_KEY] == CA_PEM + CA_PEM


def test_inline_refused_by_the_administrator(env: Env) -> None:
    env.settings = replace(env.settings, connections=ConnectionPolicy(CONNECTIONS_NS, refuse_inline=True))
    exc = refused(env)
    assert exc.reason == Reason.INLINE_CONNECTION_REFUSED and "connectionRef" in exc.message


def test_switch_from_inline_to_connection_keeps_runner_and_token(env: Env) -> None:
    first = env.reconcile()
    token = env.runner_token()
    cluster_connection(env)
    refer(env)
    second = env.reconcile()
    assert second.runner_id == first.runner_id
    assert env.runner_token() == token
    assert env.posts() == 1 and env.resets() == 0
    assert env.gitlab.runner(first.runner_id) is not None


def test_deletion_through_a_connection(env: Env) -> None:
    cluster_connection(env)
    refer(env)
    outcome = env.reconcile()
    env.delete()
    assert env.gitlab.runner(outcome.runner_id) is None


def test_deploy_token_through_a_cluster_connection(env: Env) -> None:
    cluster_connection(env, names=[NAMESPACE])
    spec = {
        "gitlab": {"connectionRef": {"kind": "ClusterGitLabConnection", "name": "main"}},
        "projectId": 7,
        "scopes": ["read_registry"],
        "validFor": "720h",
        "renewBefore": "168h",
        "secret": {"name": "registry-pull", "type": "kubernetes.io/basic-auth"},
    }
    ref = DeployTokenRef(NAMESPACE, "pull", "6d1c6c8e-0000-4000-8000-00000000abcd")
    events: list[Any] = []

    def emit(*event: Any) -> None:
        events.append(event)

    ctx = open_deploy_token(env.kube, env.pool, ref, spec, emit, LOG, policy=POLICY)
    outcome = reconcile_deploy_token(ctx)
    assert outcome.token_id is not None
    assert env.kube.secrets["registry-pull"]["data"]["password"]

    env.kube.objects[(CLUSTER_GITLAB_CONNECTION.plural, None, "main")]["spec"]["allowedNamespaces"] = {"names": ["x"]}
    calls = len(env.gitlab.calls)
    with pytest.raises(ReconcileError) as caught:
        open_deploy_token(env.kube, env.pool, ref, spec, emit, LOG, policy=POLICY)
    assert caught.value.reason == Reason.CONNECTION_NOT_ALLOWED
    assert len(env.gitlab.calls) == calls
