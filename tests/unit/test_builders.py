"""Unit tests for the pure builders: every output is parsed back (config.toml with tomllib) and checked."""

from __future__ import annotations

import ast
import base64
import dataclasses
import hashlib
import json
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glrt_operator.core.api import API_VERSION, RUNNER
from glrt_operator.core.objects import owner_reference
from glrt_operator.runners import builders
from glrt_operator.runners.builders import (
    CA_FILE,
    RUNNER_SCRIPT,
    ChildNames,
    RenderedConfig,
    build_config_secret,
    build_statefulset,
    build_token_secret,
    child_names,
    drain_script,
    labels,
    render_config_toml,
    system_id,
)
from glrt_operator.runners.model import DEFAULT_RUNNER_IMAGE, RunnerConfig, RunnerSpec, SpecError

TOKEN = "glrt-t1_SECRETsecretSECRET123"
UID = "6f1c2a6e-0d7b-4b8e-9a59-7c1f2b8e4d11"
SYSTEM_ID = re.compile(r"^[sr]_[0-9a-zA-Z]{12}$")

MINIMAL: dict[str, Any] = {
    "gitlab": {"url": "https://gitlab.example.com", "credentialsSecretRef": {"name": "gitlab-api"}},
    "runnerType": "instance_type",
}

FULL: dict[str, Any] = {
    "gitlab": {
        "url": "https://gitlab.example.com/",
        "credentialsSecretRef": {"name": "gitlab-api", "key": "token"},
        "caSecretRef": {"name": "gitlab-ca"},
    },
    "runnerType": "project_type",
    "projectId": 7,
    "description": "builds for team A",
    "tags": ["docker", "linux"],
    "replicas": 3,
    "manager": {
        "image": "registry.example.com/gitlab-runner:v19.4.0",
        "imagePullPolicy": "Always",
        "imagePullSecrets": [{"name": "regcred"}, "other"],
        "serviceAccountName": "team-ci-runner",
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "ci", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}},
        "priorityClassName": "ci-high",
        "podLabels": {"team": "a"},
        "podAnnotations": {"prometheus.io/scrape": "true"},
        "env": [{"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "id"}}}],
    },
    "config": {
        "concurrent": 20,
        "checkInterval": 5,
        "logLevel": "debug",
        "shutdownTimeout": 60,
        "requestConcurrency": 4,
        "limit": 15,
        "outputLimit": 8192,
        "environment": ["FOO=bar", "BAZ=qux"],
        "featureFlags": {"FF_USE_FASTZIP": True, "FF_NETWORK_PER_BUILD": False},
        "kubernetes": {
            "namespace": "ci-jobs",
            "image": "ubuntu:24.04",
            "privileged": True,
            "serviceAccount": "ci-jobs",
            "cpuRequest": "500m",
            "cpuLimit": "2",
            "memoryRequest": "512Mi",
            "memoryLimit": "2Gi",
            "helperImage": "registry.example.com/helper:x86_64-v19.4.0",
            "pullPolicy": ["if-not-present", "always"],
            "nodeSelector": {"zone": "b", "arch": "amd64"},
            "pollTimeout": 300,
        },
        "cache": {
            "type": "s3",
            "path": "runners",
            "shared": True,
            "s3": {
                "serverAddress": "minio.ci:9000",
                "bucketName": "runner-cache",
                "bucketLocation": "eu-west-1",
                "insecure": True,
            },
        },
    },
}


def spec_of(extra: dict[str, Any] | None = None, base: dict[str, Any] | None = None) -> RunnerSpec:
    body = json.loads(json.dumps(base if base is not None else MINIMAL))
    body.update(extra or {})
    return RunnerSpec.parse(body)


def parse(rendered: RenderedConfig) -> dict[str, Any]:
    return tomllib.loads(rendered.text)


def render(spec: RunnerSpec, **kwargs: Any) -> RenderedConfig:
    args: dict[str, Any] = {"runner_name": "builds", "runner_id": 42, "token": TOKEN}
    args.update(kwargs)
    return render_config_toml(spec, **args)


def owner() -> dict[str, Any]:
    return owner_reference(RUNNER, "builds", UID)


def statefulset(spec: RunnerSpec | None = None, **kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "name": "builds",
        "namespace": "ci",
        "owner": owner(),
        "config_secret": "builds-runner-config",
        "config_checksum": "abc123",
        "service_account": "builds-runner",
    }
    args.update(kwargs)
    return build_statefulset(spec or spec_of(), **args)


def key_paths(node: Any, prefix: str = "") -> set[str]:
    """Every key path in a parsed TOML document (tables and arrays of tables descended into)."""
    paths: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key!r}" if prefix else repr(key)
            paths.add(path)
            paths |= key_paths(value, path)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            if isinstance(item, dict):
                paths |= key_paths(item, f"{prefix}[{index}]")
    return paths


def decode(secret: dict[str, Any], key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


def metadata_strings(obj: Any) -> Iterator[str]:
    """Every label and annotation key and value found anywhere in an object (including the pod template)."""
    if isinstance(obj, dict):
        for field in ("labels", "annotations"):
            value = obj.get(field)
            if isinstance(value, dict):
                for k, v in value.items():
                    yield str(k)
                    yield str(v)
        for value in obj.values():
            yield from metadata_strings(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from metadata_strings(item)


# --- names, owner references, labels --------------------------------------------------------------------------


def test_child_names() -> None:
    assert child_names("builds") == ChildNames(
        token_secret="builds-runner-token",
        config_secret="builds-runner-config",
        statefulset="builds",
        service_account="builds-runner",
        disruption_budget="builds",
    )


def test_owner_reference_is_a_blocking_controller_reference() -> None:
    assert owner() == {
        "apiVersion": API_VERSION,
        "kind": "Runner",
        "name": "builds",
        "uid": UID,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_labels() -> None:
    assert labels("builds") == {
        "app.kubernetes.io/name": "gitlab-runner",
        "app.kubernetes.io/instance": "builds",
        "app.kubernetes.io/managed-by": "glrt-operator",
        "glrt.dev/runner": "builds",
    }


# --- system_id ------------------------------------------------------------------------------------------------


def test_system_id_format() -> None:
    assert SYSTEM_ID.match(system_id(UID, 0))
    assert system_id(UID, 0).startswith("r_")


def test_system_id_is_stable() -> None:
    assert system_id(UID, 3) == system_id(UID, 3)
    # A pinned value: a change of the derivation would silently orphan every existing runner manager.
    assert system_id("uid", 0) == "r_cuHeLsFJApCa"


def test_system_id_distinct_across_ordinals_and_uids() -> None:
    uids = [UID, "0d5bcbd5-6a4b-4c2e-a0d3-0f4c1e9b0a77", "b6a1f0b0-3c7e-4d8c-9f1a-2e5d7c9b1a33"]
    ids = [system_id(uid, ordinal) for uid in uids for ordinal in range(50)]
    assert all(SYSTEM_ID.match(i) for i in ids)
    assert len(set(ids)) == len(ids) == 150


def test_system_id_uses_the_whole_alphabet() -> None:
    chars = set("".join(system_id(UID, n)[2:] for n in range(200)))
    assert any(c.isupper() for c in chars)
    assert any(c.islower() for c in chars)
    assert any(c.isdigit() for c in chars)


@pytest.mark.parametrize(("uid", "ordinal"), [("", 0), (UID, -1)])
def test_system_id_rejects_bad_input(uid: str, ordinal: int) -> None:
    with pytest.raises(ValueError):
        system_id(uid, ordinal)


# --- config.toml ----------------------------------------------------------------------------------------------


def test_minimal_config_keys() -> None:
    doc = parse(render(spec_of(), default_namespace="ci"))
    assert doc == {
        "concurrent": 10,
        "check_interval": 3,
        "log_level": "info",
        "shutdown_timeout": 30,
        "listen_address": ":9252",
        "runners": [
            {
                "name": "builds",
                "url": "https://gitlab.example.com",
                "id": 42,
                "token": TOKEN,
                "executor": "kubernetes",
                "request_concurrency": 2,  # gitlab-runner 19 warns at 1
                "limit": 0,
                "kubernetes": {"namespace": "ci", "image": "alpine:3.20", "privileged": False},
            }
        ],
    }


def test_full_config_keys() -> None:
    doc = parse(render(spec_of(base=FULL), ca_path=CA_FILE, default_namespace="ignored"))
    assert doc == {
        "concurrent": 20,
        "check_interval": 5,
        "log_level": "debug",
        "shutdown_timeout": 60,
        "listen_address": ":9252",
        "runners": [
            {
                "name": "builds",
                "url": "https://gitlab.example.com/",
                "id": 42,
                "token": TOKEN,
                "executor": "kubernetes",
                "request_concurrency": 4,
                "limit": 15,
                "output_limit": 8192,
                "environment": ["FOO=bar", "BAZ=qux"],
                "tls-ca-file": "/certs/ca.crt",
                "feature_flags": {"FF_NETWORK_PER_BUILD": False, "FF_USE_FASTZIP": True},
                "kubernetes": {
                    "namespace": "ci-jobs",
                    "image": "ubuntu:24.04",
                    "privileged": True,
                    "service_account": "ci-jobs",
                    "cpu_request": "500m",
                    "cpu_limit": "2",
                    "memory_request": "512Mi",
                    "memory_limit": "2Gi",
                    "helper_image": "registry.example.com/helper:x86_64-v19.4.0",
                    "pull_policy": ["if-not-present", "always"],
                    "node_selector": {"arch": "amd64", "zone": "b"},
                    "poll_timeout": 300,
                },
                "cache": {
                    "Type": "s3",
                    "Path": "runners",
                    "Shared": True,
                    "s3": {
                        "ServerAddress": "minio.ci:9000",
                        "BucketName": "runner-cache",
                        "BucketLocation": "eu-west-1",
                        "Insecure": True,
                    },
                },
            }
        ],
    }


def test_feature_flags_are_a_table_under_the_runner() -> None:
    text = render(spec_of(base=FULL)).text
    assert "[runners.feature_flags]" in text
    assert "[runners.kubernetes]" in text
    assert "[runners.cache.s3]" in text


def test_config_never_lets_gitlab_runner_rotate_the_token() -> None:
    for base in (MINIMAL, FULL):
        rendered = render(spec_of(base=base))
        runner = parse(rendered)["runners"][0]
        assert "token_expires_at" not in runner
        assert "token_obtained_at" not in runner
        assert "token_expires_at" not in rendered.text


def test_namespace_omitted_without_default() -> None:
    assert "namespace" not in parse(render(spec_of()))["runners"][0]["kubernetes"]


def test_spec_namespace_wins_over_default() -> None:
    spec = spec_of({"config": {"kubernetes": {"namespace": "jobs"}}})
    assert parse(render(spec, default_namespace="ci"))["runners"][0]["kubernetes"]["namespace"] == "jobs"


def test_pull_policy_is_a_list() -> None:
    spec = spec_of({"config": {"kubernetes": {"pullPolicy": ["always"]}}})
    assert parse(render(spec))["runners"][0]["kubernetes"]["pull_policy"] == ["always"]
    # The CRD's type is an array, and the parser checks the same schema.
    with pytest.raises(SpecError, match=r"spec.config.kubernetes.pullPolicy: Invalid value: must be of type array"):
        spec_of({"config": {"kubernetes": {"pullPolicy": "always"}}})


def test_no_ca_file_unless_given() -> None:
    assert "tls-ca-file" not in parse(render(spec_of()))["runners"][0]


@pytest.mark.parametrize(
    ("cache", "expected"),
    [
        # Every key given is rendered (gitlab-runner reads only the section of its Type), nothing is invented.
        (
            {"type": "gcs", "gcs": {"bucketName": "cache"}, "s3": {"bucketName": "other"}},
            {"Type": "gcs", "gcs": {"BucketName": "cache"}, "s3": {"BucketName": "other"}},
        ),
        (
            {"type": "azure", "shared": True, "azure": {"containerName": "c"}},
            {"Type": "azure", "Shared": True, "azure": {"ContainerName": "c"}},
        ),
        ({"type": "s3"}, {"Type": "s3"}),
    ],
)
def test_cache_sections(cache: dict[str, Any], expected: dict[str, Any]) -> None:
    spec = spec_of({"config": {"cache": cache}})
    assert parse(render(spec))["runners"][0]["cache"] == expected


def test_no_cache_section_without_cache() -> None:
    assert "cache" not in parse(render(spec_of()))["runners"][0]


def test_cache_has_no_credentials() -> None:
    text = render(spec_of(base=FULL)).text
    for key in ("AccessKey", "SecretKey", "SessionToken", "AccountKey", "PrivateKey", "CredentialsFile"):
        assert key not in text


INJECTIONS = [
    'x"\nconcurrent = 999\n',
    "x'''\n[session_server]\nlisten_address = \"0.0.0.0:1\"",
    '\n[x]\nkey="v"',
    ']\n[[runners]]\nname = "evil"\ntoken = "glrt-evil"',
    '"""\n[runners.kubernetes]\nprivileged = true\n"""',
    'a\\"b\\\\"\u0000\t\r\n\u2028',
    '" # comment\nexecutor = "shell',
]


def _injected_spec(payload: str) -> RunnerSpec:
    # The config is set past the parser: the CRD refuses some of these strings (an environment entry with a newline,
    # a pull policy outside its enum); the renderer must not depend on that.
    parsed = spec_of({"description": payload[:1000], "tags": ["ok", payload.replace(",", ";")]})
    return dataclasses.replace(
        parsed,
        config=RunnerConfig(
            {
                "environment": [f"EVIL={payload}"],
                "featureFlags": {payload: True},
                "kubernetes": {
                    "image": payload,
                    "namespace": payload,
                    "serviceAccount": payload,
                    "helperImage": payload,
                    "cpuRequest": payload,
                    "pullPolicy": [payload],
                    "nodeSelector": {payload: payload},
                },
                "cache": {"type": "s3", "path": payload, "s3": {"bucketName": payload, "serverAddress": payload}},
            }
        ),
    )


def _clean_spec() -> RunnerSpec:
    return _injected_spec("v")


def _normalise(paths: set[str], payload: str) -> set[str]:
    # The only user-controlled key names are the feature flag and node selector keys: map them to "v".
    return {p.replace(repr(payload), repr("v")) for p in paths}


@pytest.mark.parametrize("payload", INJECTIONS)
def test_user_strings_cannot_inject_toml(payload: str) -> None:
    reference = key_paths(parse(render(_clean_spec(), runner_name="v", ca_path="v")))
    rendered = render(
        _injected_spec(payload), runner_name=payload, token=TOKEN, ca_path=payload, default_namespace=payload
    )
    doc = parse(rendered)
    assert _normalise(key_paths(doc), payload) == reference
    assert len(doc["runners"]) == 1
    runner = doc["runners"][0]
    assert doc["concurrent"] == 10
    assert runner["token"] == TOKEN
    assert runner["executor"] == "kubernetes"
    assert runner["name"] == payload
    assert runner["tls-ca-file"] == payload
    assert runner["environment"] == [f"EVIL={payload}"]
    assert runner["feature_flags"] == {payload: True}
    kubernetes = runner["kubernetes"]
    assert kubernetes["image"] == payload
    assert kubernetes["privileged"] is False
    assert kubernetes["node_selector"] == {payload: payload}
    assert runner["cache"]["s3"]["BucketName"] == payload


def test_hostile_token_cannot_inject_toml() -> None:
    token = 'glrt-x"\n[[runners]]\ntoken = "y'
    doc = parse(render(spec_of(), token=token))
    assert len(doc["runners"]) == 1
    assert doc["runners"][0]["token"] == token


def test_rendering_is_deterministic() -> None:
    first = render(spec_of(base=FULL), ca_path=CA_FILE, default_namespace="ci")
    second = render(spec_of(base=FULL), ca_path=CA_FILE, default_namespace="ci")
    assert first == second
    assert first.text.encode() == second.text.encode()


def test_map_order_does_not_change_the_output() -> None:
    a = spec_of(
        {
            "config": {
                "featureFlags": {"FF_A": True, "FF_B": False},
                "kubernetes": {"nodeSelector": {"x": "1", "y": "2"}},
            }
        }
    )
    b = spec_of(
        {
            "config": {
                "featureFlags": {"FF_B": False, "FF_A": True},
                "kubernetes": {"nodeSelector": {"y": "2", "x": "1"}},
            }
        }
    )
    assert render(a).sha256 == render(b).sha256


def test_checksums() -> None:
    rendered = render(spec_of())
    assert rendered.sha256 == hashlib.sha256(rendered.text.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", rendered.token_free_sha256)
    assert rendered.token_free_sha256 != rendered.sha256


def test_token_change_keeps_token_free_checksum() -> None:
    old = render(spec_of(), token="glrt-old")
    new = render(spec_of(), token="glrt-new")
    assert old.sha256 != new.sha256
    assert old.text != new.text
    assert old.token_free_sha256 == new.token_free_sha256


@pytest.mark.parametrize(
    "change",
    [
        {"config": {"concurrent": 11}},
        {"config": {"kubernetes": {"image": "alpine:3.21"}}},
        {"config": {"environment": ["A=1"]}},
        {"gitlab": {"url": "https://other.example.com", "credentialsSecretRef": {"name": "gitlab-api"}}},
    ],
)
def test_other_changes_move_both_checksums(change: dict[str, Any]) -> None:
    base = render(spec_of())
    changed = render(spec_of(change))
    assert changed.sha256 != base.sha256
    assert changed.token_free_sha256 != base.token_free_sha256


def test_runner_id_and_name_move_token_free_checksum() -> None:
    base = render(spec_of())
    assert render(spec_of(), runner_id=43).token_free_sha256 != base.token_free_sha256
    assert render(spec_of(), runner_name="other").token_free_sha256 != base.token_free_sha256


# --- Secrets --------------------------------------------------------------------------------------------------


def token_secret(**kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "name": "builds-runner-token",
        "namespace": "ci",
        "owner": owner(),
        "runner_name": "builds",
        "runner_id": 42,
        "token": TOKEN,
        "token_expires_at": "2026-12-22T10:00:00Z",
        "token_obtained_at": "2026-11-22T10:00:03Z",
    }
    args.update(kwargs)
    return build_token_secret(**args)


def config_secret(replicas: int = 3, rendered: RenderedConfig | None = None) -> dict[str, Any]:
    return build_config_secret(
        name="builds-runner-config",
        namespace="ci",
        owner=owner(),
        runner_name="builds",
        runner_uid=UID,
        replicas=replicas,
        rendered=rendered or render(spec_of()),
    )


def test_token_secret() -> None:
    secret = token_secret()
    assert secret["apiVersion"] == "v1"
    assert secret["kind"] == "Secret"
    assert secret["type"] == "glrt.dev/runner-token"
    assert set(secret["data"]) == {"token"}
    assert "stringData" not in secret
    assert decode(secret, "token") == TOKEN
    meta = secret["metadata"]
    assert meta["name"] == "builds-runner-token"
    assert meta["namespace"] == "ci"
    assert meta["labels"] == labels("builds")
    assert meta["ownerReferences"] == [owner()]
    assert meta["annotations"] == {
        "glrt.dev/runner-id": "42",
        "glrt.dev/token-expires-at": "2026-12-22T10:00:00Z",
        "glrt.dev/token-obtained-at": "2026-11-22T10:00:03Z",
    }


def test_token_secret_without_expiry() -> None:
    annotations = token_secret(token_expires_at=None)["metadata"]["annotations"]
    assert "glrt.dev/token-expires-at" not in annotations
    assert annotations["glrt.dev/runner-id"] == "42"


def test_config_secret() -> None:
    rendered = render(spec_of())
    secret = config_secret(3, rendered)
    assert secret["kind"] == "Secret"
    assert secret["type"] == "Opaque"
    meta = secret["metadata"]
    assert meta["name"] == "builds-runner-config"
    assert meta["namespace"] == "ci"
    assert meta["labels"] == labels("builds")
    assert meta["ownerReferences"] == [owner()]
    assert meta["annotations"]["glrt.dev/config-sha256"] == rendered.sha256
    assert decode(secret, "config.toml") == rendered.text
    for ordinal in range(3):
        content = decode(secret, f"system-id-{ordinal}")
        assert content == system_id(UID, ordinal) + "\n"
        assert SYSTEM_ID.match(content.strip())


@pytest.mark.parametrize("replicas", [0, 1, 2, 7, 100])
def test_config_secret_has_exactly_one_system_id_per_replica(replicas: int) -> None:
    secret = config_secret(replicas)
    ids = {k for k in secret["data"] if k.startswith("system-id-")}
    assert ids == {f"system-id-{n}" for n in range(replicas)}
    assert set(secret["data"]) == ids | {"config.toml"}
    assert len({decode(secret, k) for k in ids}) == replicas


def test_config_secret_system_ids_survive_scaling() -> None:
    small, large = config_secret(2), config_secret(5)
    for key in ("system-id-0", "system-id-1"):
        assert small["data"][key] == large["data"][key]


def test_config_secret_rejects_negative_replicas() -> None:
    with pytest.raises(ValueError):
        config_secret(-1)


def test_owner_dict_is_not_aliased() -> None:
    ref = owner()
    secret = build_token_secret(
        name="t",
        namespace="ci",
        owner=ref,
        runner_name="builds",
        runner_id=1,
        token=TOKEN,
        token_expires_at=None,
        token_obtained_at="2026-01-01T00:00:00Z",
    )
    secret["metadata"]["ownerReferences"][0]["name"] = "changed"
    assert ref["name"] == "builds"


def test_token_appears_in_no_label_or_annotation() -> None:
    spec = spec_of(base=FULL)
    rendered = render(spec, ca_path=CA_FILE)
    objects = [
        token_secret(),
        config_secret(3, rendered),
        statefulset(spec, config_checksum=rendered.token_free_sha256, ca_secret_key=("gitlab-ca", "ca.crt")),
    ]
    for obj in objects:
        strings = list(metadata_strings(obj))
        assert strings, "expected labels/annotations to check"
        assert all(TOKEN not in s for s in strings)
    # Nor anywhere in the StatefulSet (it reaches pods only through the config Secret).
    assert TOKEN not in json.dumps(objects[2])


# --- StatefulSet ----------------------------------------------------------------------------------------------


def pod_spec(sts: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = sts["spec"]["template"]["spec"]
    return result


def container(sts: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(sts)["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def test_statefulset_metadata_and_spec() -> None:
    sts = statefulset(spec_of({"replicas": 4}))
    assert sts["apiVersion"] == "apps/v1"
    assert sts["kind"] == "StatefulSet"
    assert sts["metadata"]["name"] == "builds"
    assert sts["metadata"]["namespace"] == "ci"
    assert sts["metadata"]["labels"] == labels("builds")
    assert sts["metadata"]["ownerReferences"] == [owner()]
    assert sts["spec"]["replicas"] == 4
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["serviceName"] == "builds"
    # Every replica rolls at once (each drains on its own) where the MaxUnavailableStatefulSet feature is on.
    assert sts["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}}


def test_statefulset_zero_replicas() -> None:
    assert statefulset(spec_of({"replicas": 0}))["spec"]["replicas"] == 0


def test_selector_matches_template_labels() -> None:
    sts = statefulset(spec_of(base=FULL))
    selector = sts["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/instance": "builds", "glrt.dev/runner": "builds"}
    template_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= template_labels.items()
    assert labels("builds").items() <= template_labels.items()
    assert template_labels["team"] == "a"


def test_user_pod_labels_cannot_break_the_selector() -> None:
    spec = spec_of({"manager": {"podLabels": {"glrt.dev/runner": "other", "app.kubernetes.io/instance": "x"}}})
    sts = statefulset(spec)
    template_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= template_labels.items()


def test_checksum_annotation() -> None:
    annotations = statefulset(spec_of(base=FULL), config_checksum="deadbeef")["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert annotations["glrt.dev/config-checksum"] == "deadbeef"
    assert annotations["prometheus.io/scrape"] == "true"


def test_user_annotation_cannot_override_checksum() -> None:
    spec = spec_of({"manager": {"podAnnotations": {"glrt.dev/config-checksum": "user"}}})
    annotations = statefulset(spec, config_checksum="real")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["glrt.dev/config-checksum"] == "real"


def test_pod_template_changes_only_with_checksum() -> None:
    spec = spec_of(base=FULL)
    assert statefulset(spec, config_checksum="a") == statefulset(spec, config_checksum="a")
    assert statefulset(spec, config_checksum="a") != statefulset(spec, config_checksum="b")


def test_pod_security_context() -> None:
    pod = pod_spec(statefulset())
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 100,
        "runAsGroup": 65533,
        "fsGroup": 65533,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["automountServiceAccountToken"] is True
    # The default drain timeout (3600 s, the official chart's) plus the default shutdown_timeout (30 s).
    assert pod["terminationGracePeriodSeconds"] == 3630


def test_pod_ids_left_to_the_platform() -> None:
    # OpenShift's restricted-v2 assigns the UID and fsGroup and refuses a pod that pins others.
    assert pod_spec(statefulset(pin_ids=False))["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_termination_grace_is_the_drain_timeout_plus_shutdown_timeout() -> None:
    assert pod_spec(statefulset(spec_of(base=FULL)))["terminationGracePeriodSeconds"] == 3660
    spec = spec_of({"manager": {"drainTimeout": 120}, "config": {"shutdownTimeout": 10}})
    assert pod_spec(statefulset(spec))["terminationGracePeriodSeconds"] == 130


def test_every_stop_drains_through_a_pre_stop_hook() -> None:
    hook = container(statefulset(spec_of({"manager": {"drainTimeout": 90}})))["lifecycle"]["preStop"]
    assert hook == {"exec": {"command": ["/bin/sh", "-c", drain_script(90)]}}
    script = drain_script(90)
    assert script.startswith("kill -QUIT 1")  # graceful: gitlab-runner waits for its running jobs
    assert "+ 90 ))" in script and "kill -0 1" in script  # until it exits, at most 90 s
    assert "TERM" not in script  # the kubelet's SIGTERM after the hook is the forceful path


def test_container_security_context() -> None:
    c = container(statefulset())
    assert c["name"] == "runner"
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def test_minimal_pod_has_no_optional_fields() -> None:
    sts = statefulset()
    pod = pod_spec(sts)
    # The operator's own ServiceAccount (the executor's RoleBindings grant to it), spread over nodes.
    assert pod["serviceAccountName"] == "builds-runner"
    assert pod["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "builds", "glrt.dev/runner": "builds"}},
        }
    ]
    for key in (
        "imagePullSecrets",
        "nodeSelector",
        "tolerations",
        "affinity",
        "priorityClassName",
    ):
        assert key not in pod
    c = container(sts)
    assert c["image"] == DEFAULT_RUNNER_IMAGE
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert "resources" not in c


def test_manager_pod_settings() -> None:
    sts = statefulset(spec_of(base=FULL))
    pod = pod_spec(sts)
    assert pod["serviceAccountName"] == "team-ci-runner"  # the user's own, instead of the operator's
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "other"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"] == [{"key": "ci", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["affinity"] == FULL["manager"]["affinity"]
    assert pod["priorityClassName"] == "ci-high"
    c = container(sts)
    assert c["image"] == "registry.example.com/gitlab-runner:v19.4.0"
    assert c["imagePullPolicy"] == "Always"
    assert c["resources"] == FULL["manager"]["resources"]


def test_env() -> None:
    env = container(statefulset(spec_of(base=FULL)))["env"]
    assert env[0] == {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    assert env[1] == {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
    assert env[2] == {"name": "HOME", "value": "/home/gitlab-runner"}  # the writable emptyDir, whatever the UID
    assert env[3] == FULL["manager"]["env"][0]
    assert len(env) == 4


def test_user_env_may_set_home() -> None:
    env = container(statefulset(spec_of({"manager": {"env": [{"name": "HOME", "value": "/cache"}]}})))["env"]
    assert [e for e in env if e["name"] == "HOME"] == [{"name": "HOME", "value": "/cache"}]


def test_user_env_cannot_shadow_pod_name() -> None:
    spec = spec_of({"manager": {"env": [{"name": "POD_NAME", "value": "x-9"}, {"name": "OK", "value": "1"}]}})
    env = container(statefulset(spec))["env"]
    assert [e["name"] for e in env] == ["POD_NAME", "POD_NAMESPACE", "HOME", "OK"]
    assert "value" not in env[0]


def test_output_does_not_alias_the_spec() -> None:
    spec = spec_of(base=FULL)
    sts = statefulset(spec)
    container(sts)["resources"]["requests"]["cpu"] = "9"
    container(sts)["env"][3]["valueFrom"]["secretKeyRef"]["name"] = "changed"
    assert statefulset(spec) == statefulset(spec_of(base=FULL))


def test_command_and_script() -> None:
    c = container(statefulset())
    assert c["command"] == ["/bin/sh", "-c", RUNNER_SCRIPT]
    lines = RUNNER_SCRIPT.splitlines()
    assert lines[0] == "set -eu"
    assert 'ordinal="${POD_NAME##*-}"' in lines
    assert "ln -sf /secrets/config.toml /etc/gitlab-runner/config.toml" in lines
    assert 'cp "$src" /etc/gitlab-runner/.runner_system_id' in lines
    assert 'src="/secrets/system-id-${ordinal}"' in lines
    assert lines[-1] == (
        "exec gitlab-runner run --config /etc/gitlab-runner/config.toml --working-directory /home/gitlab-runner"
    )


def _run_script(tmp_path: Path, pod_name: str, replicas: int = 3) -> subprocess.CompletedProcess[str]:
    """Run RUNNER_SCRIPT with its absolute paths moved under tmp_path and a stub gitlab-runner on PATH."""
    secrets, etc, home, bin_dir = (tmp_path / d for d in ("secrets", "etc", "home", "bin"))
    for d in (etc, home, bin_dir):
        d.mkdir(exist_ok=True)
    if not secrets.exists():
        secrets.mkdir()
        secret = config_secret(replicas)
        for key in secret["data"]:
            (secrets / key).write_text(decode(secret, key))
            (secrets / key).chmod(0o440)
    stub = bin_dir / "gitlab-runner"
    stub.write_text('#!/bin/sh\necho "ARGS $*"\necho "ID $(cat "$RUNNER_DIR/.runner_system_id")"\n')
    stub.chmod(0o755)
    script = (
        RUNNER_SCRIPT.replace("/secrets", str(secrets))
        .replace("/etc/gitlab-runner", str(etc))
        .replace("/home/gitlab-runner", str(home))
    )
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "POD_NAME": pod_name, "RUNNER_DIR": str(etc)}
    return subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=10, check=False)


def test_script_seeds_this_replicas_system_id(tmp_path: Path) -> None:
    result = _run_script(tmp_path, "my-builds-2")
    assert result.returncode == 0, result.stderr
    etc = tmp_path / "etc"
    assert f"ID {system_id(UID, 2)}" in result.stdout.splitlines()
    # Owner-writable like gitlab-runner's own file (the Secret's 0440 does not stick to the copy).
    assert (etc / ".runner_system_id").stat().st_mode & 0o777 == 0o600
    assert (etc / "config.toml").is_symlink()
    assert (etc / "config.toml").resolve() == (tmp_path / "secrets" / "config.toml").resolve()
    assert result.stdout.splitlines()[0] == (
        f"ARGS run --config {etc}/config.toml --working-directory {tmp_path / 'home'}"
    )


def test_script_survives_a_container_restart(tmp_path: Path) -> None:
    assert _run_script(tmp_path, "builds-1").returncode == 0
    # The emptyDir keeps the previous copy (read-only if the chmod were missing): the second start must work too.
    result = _run_script(tmp_path, "builds-1")
    assert result.returncode == 0, result.stderr
    assert f"ID {system_id(UID, 1)}" in result.stdout.splitlines()


def test_script_fails_for_a_replica_the_secret_does_not_cover(tmp_path: Path) -> None:
    result = _run_script(tmp_path, "builds-3", replicas=3)
    assert result.returncode != 0
    assert "system-id-3" in result.stderr
    assert "ARGS" not in result.stdout
    assert not (tmp_path / "etc" / ".runner_system_id").exists()


def test_probes_use_the_local_metrics_port() -> None:
    c = container(statefulset(spec_of(base=FULL)))
    assert c["ports"] == [{"name": "metrics", "containerPort": 9252, "protocol": "TCP"}]
    for probe_name in ("livenessProbe", "readinessProbe"):
        probe = c[probe_name]
        assert probe["httpGet"]["path"] == "/metrics"
        assert probe["httpGet"]["port"] == "metrics"
        assert "host" not in probe["httpGet"]
        assert "exec" not in probe
        assert probe["periodSeconds"] > 0
        assert probe["timeoutSeconds"] < probe["periodSeconds"]
        assert "gitlab" not in json.dumps(probe).lower()


def test_listen_address_matches_the_probe_port() -> None:
    listen = parse(render(spec_of()))["listen_address"]
    port = container(statefulset())["ports"][0]["containerPort"]
    assert listen == f":{port}"


def _mounts_and_volumes(sts: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    mounts = {m["name"]: m for m in container(sts)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(sts)["volumes"]}
    assert len(mounts) == len(container(sts)["volumeMounts"])
    assert len(volumes) == len(pod_spec(sts)["volumes"])
    return mounts, volumes


def test_volumes_and_mounts() -> None:
    mounts, volumes = _mounts_and_volumes(statefulset())
    assert set(mounts) == set(volumes) == {"config", "etc", "home", "tmp"}
    assert mounts["config"] == {"name": "config", "mountPath": "/secrets", "readOnly": True}
    assert volumes["config"]["secret"] == {"secretName": "builds-runner-config", "defaultMode": 0o440}
    assert {mounts[n]["mountPath"] for n in ("etc", "home", "tmp")} == {
        "/etc/gitlab-runner",
        "/home/gitlab-runner",
        "/tmp",
    }
    for name in ("etc", "home", "tmp"):
        assert volumes[name] == {"name": name, "emptyDir": {}}
        assert not mounts[name].get("readOnly", False)


def test_ca_volume() -> None:
    mounts, volumes = _mounts_and_volumes(statefulset(ca_secret_key=("gitlab-ca", "tls.crt")))
    assert set(mounts) == set(volumes) == {"config", "etc", "home", "tmp", "ca"}
    assert mounts["ca"] == {"name": "ca", "mountPath": "/certs", "readOnly": True}
    assert volumes["ca"]["secret"]["secretName"] == "gitlab-ca"
    assert volumes["ca"]["secret"]["items"] == [{"key": "tls.crt", "path": "ca.crt"}]
    assert CA_FILE == "/certs/ca.crt"
    assert CA_FILE.startswith(mounts["ca"]["mountPath"] + "/")


def test_credential_file_volume_matches_config_toml() -> None:
    gcs = {"type": "gcs", "gcs": {"bucketName": "c", "credentialsFileSecretRef": {"name": "gcs-sa", "key": "sa.json"}}}
    spec = spec_of({"config": {"cache": gcs}})
    mounts, volumes = _mounts_and_volumes(statefulset(spec))
    (name,) = set(volumes) - {"config", "etc", "home", "tmp"}
    # Readable by the runner (uid 100) through fsGroup, like the other Secret volumes.
    assert volumes[name]["secret"] == {
        "secretName": "gcs-sa",
        "items": [{"key": "sa.json", "path": "value"}],
        "defaultMode": 0o440,
    }
    assert mounts[name]["readOnly"] is True
    path = "/etc/gitlab-runner-credentials/cache-gcs-credentialsfile/value"
    assert mounts[name]["mountPath"] + "/value" == path
    credentials = {("cache", "gcs", "CredentialsFile"): path}
    gcs_table = parse(render(spec, credentials=credentials))["runners"][0]["cache"]["gcs"]
    assert gcs_table == {"BucketName": "c", "CredentialsFile": path}


def test_script_paths_are_mounted() -> None:
    mounts, _ = _mounts_and_volumes(statefulset())
    mount_paths = {m["mountPath"] for m in mounts.values()}
    for path in ("/secrets", "/etc/gitlab-runner", "/home/gitlab-runner"):
        assert path in mount_paths
        assert path in RUNNER_SCRIPT


def test_writable_paths_are_emptydirs_under_a_read_only_root() -> None:
    sts = statefulset()
    mounts, volumes = _mounts_and_volumes(sts)
    writable = {m["mountPath"] for m in mounts.values() if not m.get("readOnly", False)}
    assert writable == {"/etc/gitlab-runner", "/home/gitlab-runner", "/tmp"}
    for name, mount in mounts.items():
        if mount["mountPath"] in writable:
            assert "emptyDir" in volumes[name]


def test_builders_package_is_pure() -> None:
    package = Path(builders.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert {m.stem for m in modules} >= {"__init__", "common", "config_toml", "secrets", "statefulset"}
    allowed = {"__future__", "base64", "copy", "hashlib", "hmac", "re", "collections.abc", "dataclasses", "typing"}
    for module in modules:
        imported: set[str] = set()
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                # Relative: a sibling builder, or `..model` (the typed spec); nothing else of the package.
                imported.add("." * node.level + (node.module or ""))
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"open", "print", "exec", "eval"}
        siblings = {f".{m.stem}" for m in modules}
        # runner_config's renderer and credential plan are pure too (they read only the packaged keys.json), and so
        # are the labels and owner references every resource's children share.
        runner_config = {"...runner_config.render", "...runner_config.credentials"}
        assert imported <= allowed | siblings | runner_config | {
            "tomli_w",
            "..model",
            "...core.objects",
            "...core.api",
        }, module.name
