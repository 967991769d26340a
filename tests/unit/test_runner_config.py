"""runner_config: the keys data, the spec.config schema, the renderer, credentials and import-config."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from glrt_operator.runner_config import keys
from glrt_operator.runner_config.credentials import SecretRef, credential_plan, resolved_credentials
from glrt_operator.runner_config.importer import import_config
from glrt_operator.runner_config.render import RenderError, render_document
from glrt_operator.runner_config.schema import spec_config_schema
from glrt_operator.runner_config.validate import schema_errors

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "config-toml"
OWNED_RUNNER = {"name": "r", "url": "https://gitlab.example.com", "id": 7, "token": "glrt-test"}
OWNED_GLOBAL = {"listen_address": ":9252"}


def validate(schema: dict[str, Any], value: Any, path: str = "spec.config") -> list[str]:
    """Errors the API server would report (the operator's own check, runner_config.validate)."""
    return schema_errors(schema, value, path)


SCHEMA = spec_config_schema()


# --- the data ---------------------------------------------------------------------------------------------------


def test_keys_data_records_its_source_and_covers_the_sections() -> None:
    src = keys.source()
    versions = dict(
        line.split("=", 1) for line in (ROOT / "scripts/versions.env").read_text().splitlines() if "=" in line
    )
    assert src["module_version"] == versions["GITLAB_RUNNER_MODULE_VERSION"]
    assert src["runner_version"] == versions["GITLAB_RUNNER_VERSION"] == "19.4.0"
    assert "common/config.go" in src["files"] and "cache/cacheconfig/cacheconfig.go" in src["files"]
    k8s = keys.runner_key().fields["kubernetes"]
    assert {"hostPath", "emptyDir", "pvc", "secret", "configMap", "csi", "nfs"} <= set(k8s.fields["volumes"].fields)
    assert {"nodeTolerations", "affinity", "podSecurityContext", "services", "dnsConfig", "podSpec"} <= set(k8s.fields)
    assert {"s3", "gcs", "azure"} <= set(keys.runner_key().fields["cache"].fields)
    assert keys.runner_key().fields["featureFlags"].kind == "map"


@pytest.mark.skipif(shutil.which("go") is None, reason="the generator needs the Go toolchain")
def test_committed_keys_match_the_generator() -> None:
    result = subprocess.run(
        [str(ROOT / "scripts/gen-runner-config-keys.sh"), "-"], check=False, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    committed = (ROOT / "operator/glrt_operator/runner_config/keys.json").read_text()
    assert result.stdout == committed, "keys.json is stale: run scripts/gen-runner-config-keys.sh"


# --- the kitchen sink ---------------------------------------------------------------------------------------------

KITCHEN_SINK: dict[str, Any] = {
    "concurrent": 12,
    "checkInterval": 5,
    "logLevel": "warn",
    "logFormat": "json",
    "shutdownTimeout": 60,
    "connectionMaxAge": "15m",
    "sessionServer": {"sessionTimeout": 600, "advertiseAddress": "runner.example.com:8093"},
    "global": {"labels": {"site": "eu"}},
    "limit": 6,
    "outputLimit": 16384,
    "requestConcurrency": 2,
    "unhealthyRequestsLimit": 5,
    "unhealthyInterval": "30m",
    "buildsDir": "/builds",
    "cacheDir": "/cache",
    "cloneUrl": "https://mirror.example.com",
    "environment": ["GIT_DEPTH=10", "LANG=C.UTF-8"],
    "preGetSourcesScript": "echo pre-get",
    "postBuildScript": "echo post",
    "shell": "bash",
    "labels": {"team": "platform"},
    "featureFlags": {"FF_USE_FASTZIP": True, "FF_RETRIEVE_POD_WARNING_EVENTS": True},
    "kubernetes": {
        "namespace": "ci",
        "image": "alpine:3.20",
        "privileged": False,
        "serviceAccount": "ci-jobs",
        "cpuRequest": "500m",
        "memoryLimit": "2Gi",
        "helperImage": "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-v19.4.0",
        "helperCpuRequest": "100m",
        "pullPolicy": ["if-not-present", "always"],
        "allowedImages": ["alpine:*", "python:*"],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "nodeTolerations": {"ci=true": "NoSchedule", "spot": "NoExecute"},
        "podLabels": {"app": "ci-job"},
        "podAnnotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
        "pollTimeout": 300,
        "dnsPolicy": "cluster-first",
        "dnsConfig": {"nameservers": ["1.1.1.1"], "options": [{"name": "ndots", "value": "2"}]},
        "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000},
        "services": [{"name": "postgres:16", "alias": "db"}],
        "podSpec": [{"name": "hostname", "patch": '{"hostname": "ci"}', "patchType": "merge"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ci"]}]}]
                }
            }
        },
        "volumes": {
            "hostPath": [{"name": "sock", "mountPath": "/var/run/docker.sock", "hostPath": "/var/run/docker.sock"}],
            "emptyDir": [{"name": "scratch", "mountPath": "/scratch", "medium": "Memory"}],
            "pvc": [{"name": "cache-pvc", "mountPath": "/cache"}],
            "secret": [{"name": "ssh", "mountPath": "/root/.ssh", "readOnly": True}],
            "configMap": [{"name": "ca", "mountPath": "/etc/ssl/custom"}],
            "csi": [{"name": "csi", "mountPath": "/csi", "driver": "csi.example.com"}],
            "nfs": [{"name": "nfs", "mountPath": "/nfs", "server": "nfs.example.com", "path": "/export"}],
        },
    },
    "cache": {
        "type": "s3",
        "path": "runners",
        "shared": True,
        "s3": {
            "serverAddress": "s3.example.com",
            "bucketName": "ci-cache",
            "bucketLocation": "eu-west-1",
            "accessKeySecretRef": {"name": "s3-creds", "key": "access"},
            "secretKeySecretRef": {"name": "s3-creds", "key": "secret"},
        },
    },
}

EXPECTED: dict[str, Any] = {
    "concurrent": 12,
    "check_interval": 5,
    "log_level": "warn",
    "log_format": "json",
    "shutdown_timeout": 60,
    "connection_max_age": "15m",
    "session_server": {"session_timeout": 600, "advertise_address": "runner.example.com:8093"},
    "labels": {"site": "eu"},
    "listen_address": ":9252",
    "runners": [
        {
            "executor": "kubernetes",
            **OWNED_RUNNER,
            "limit": 6,
            "output_limit": 16384,
            "request_concurrency": 2,
            "unhealthy_requests_limit": 5,
            "unhealthy_interval": "30m",
            "builds_dir": "/builds",
            "cache_dir": "/cache",
            "clone_url": "https://mirror.example.com",
            "environment": ["GIT_DEPTH=10", "LANG=C.UTF-8"],
            "pre_get_sources_script": "echo pre-get",
            "post_build_script": "echo post",
            "shell": "bash",
            "labels": {"team": "platform"},
            "feature_flags": {"FF_USE_FASTZIP": True, "FF_RETRIEVE_POD_WARNING_EVENTS": True},
            "kubernetes": {
                "namespace": "ci",
                "image": "alpine:3.20",
                "privileged": False,
                "service_account": "ci-jobs",
                "cpu_request": "500m",
                "memory_limit": "2Gi",
                "helper_image": "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-v19.4.0",
                "helper_cpu_request": "100m",
                "pull_policy": ["if-not-present", "always"],
                "allowed_images": ["alpine:*", "python:*"],
                "node_selector": {"kubernetes.io/os": "linux"},
                "node_tolerations": {"ci=true": "NoSchedule", "spot": "NoExecute"},
                "pod_labels": {"app": "ci-job"},
                "pod_annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
                "poll_timeout": 300,
                "dns_policy": "cluster-first",
                "dns_config": {"nameservers": ["1.1.1.1"], "options": [{"name": "ndots", "value": "2"}]},
                "pod_security_context": {"run_as_non_root": True, "run_as_user": 1000, "fs_group": 1000},
                "services": [{"name": "postgres:16", "alias": "db"}],
                "pod_spec": [{"name": "hostname", "patch": '{"hostname": "ci"}', "patch_type": "merge"}],
                "affinity": {
                    "node_affinity": {
                        "required_during_scheduling_ignored_during_execution": {
                            "node_selector_terms": [
                                {"match_expressions": [{"key": "pool", "operator": "In", "values": ["ci"]}]}
                            ]
                        }
                    }
                },
                "volumes": {
                    "host_path": [
                        {"name": "sock", "mount_path": "/var/run/docker.sock", "host_path": "/var/run/docker.sock"}
                    ],
                    "empty_dir": [{"name": "scratch", "mount_path": "/scratch", "medium": "Memory"}],
                    "pvc": [{"name": "cache-pvc", "mount_path": "/cache"}],
                    "secret": [{"name": "ssh", "mount_path": "/root/.ssh", "read_only": True}],
                    "config_map": [{"name": "ca", "mount_path": "/etc/ssl/custom"}],
                    "csi": [{"name": "csi", "mount_path": "/csi", "driver": "csi.example.com"}],
                    "nfs": [{"name": "nfs", "mount_path": "/nfs", "server": "nfs.example.com", "path": "/export"}],
                },
            },
            "cache": {
                "Type": "s3",
                "Path": "runners",
                "Shared": True,
                "s3": {
                    "ServerAddress": "s3.example.com",
                    "BucketName": "ci-cache",
                    "BucketLocation": "eu-west-1",
                    "AccessKey": "access-value",
                    "SecretKey": "secret-value",
                },
            },
        }
    ],
}


def _leaves(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_leaves(v) for v in value.values())
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return sum(_leaves(v) for v in value)
    return 1


def _render(config: dict[str, Any], secrets: dict[SecretRef, str] | None = None) -> dict[str, Any]:
    plan = credential_plan(config)
    creds = resolved_credentials(plan, secrets or {})
    doc = render_document(config, owned_global=OWNED_GLOBAL, owned_runner=OWNED_RUNNER, credentials=creds)
    return tomllib.loads(tomli_w.dumps(doc))


def test_kitchen_sink_is_valid_and_renders_key_by_key() -> None:
    assert validate(SCHEMA, KITCHEN_SINK) == []
    assert _leaves(KITCHEN_SINK) >= 40
    secrets = {SecretRef("s3-creds", "access"): "access-value", SecretRef("s3-creds", "secret"): "secret-value"}
    got = _render(KITCHEN_SINK, secrets)

    def compare(expected: Any, actual: Any, path: str) -> None:
        if isinstance(expected, dict):
            assert isinstance(actual, dict) and set(actual) == set(expected), path
            for k in expected:
                compare(expected[k], actual[k], f"{path}.{k}")
        elif isinstance(expected, list) and expected and isinstance(expected[0], dict):
            assert isinstance(actual, list) and len(actual) == len(expected), path
            for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
                compare(e, a, f"{path}[{i}]")
        else:
            assert actual == expected, path

    compare(EXPECTED, got, "")
    assert got == EXPECTED


def test_existing_curated_manifest_keeps_its_meaning() -> None:
    example = {
        "concurrent": 4,
        "logLevel": "info",
        "requestConcurrency": 1,
        "environment": ["A=b"],
        "featureFlags": {"FF_USE_FASTZIP": True},
        "kubernetes": {"namespace": "ci", "pullPolicy": ["always"], "cpuLimit": "1", "pollTimeout": 60},
        "cache": {"type": "gcs", "shared": True, "gcs": {"bucketName": "b"}},
    }
    assert validate(SCHEMA, example) == []
    runner = _render(example)["runners"][0]
    assert runner["kubernetes"] == {"namespace": "ci", "pull_policy": ["always"], "cpu_limit": "1", "poll_timeout": 60}
    assert runner["cache"] == {"Type": "gcs", "Shared": True, "gcs": {"BucketName": "b"}}
    assert runner["request_concurrency"] == 1 and runner["feature_flags"] == {"FF_USE_FASTZIP": True}


def test_gcs_credentials_file_is_a_mounted_secret() -> None:
    config = {"cache": {"type": "gcs", "gcs": {"credentialsFileSecretRef": {"name": "gcs", "key": "sa.json"}}}}
    plan = credential_plan(config)
    assert plan.inline == {}
    assert plan.volumes == [
        {
            "name": "credential-0",
            "secret": {"secretName": "gcs", "items": [{"key": "sa.json", "path": "value"}], "defaultMode": 0o440},
        }
    ]
    path = plan.files[("cache", "gcs", "CredentialsFile")]
    assert plan.volume_mounts == [{"name": "credential-0", "mountPath": path.rsplit("/", 1)[0], "readOnly": True}]
    assert _render(config)["runners"][0]["cache"]["gcs"] == {"CredentialsFile": path}


def test_unresolved_secret_is_an_error() -> None:
    config = {"cache": {"type": "azure", "azure": {"accountKeySecretRef": {"name": "az", "key": "k"}}}}
    with pytest.raises(RenderError, match="accountKeySecretRef"):
        render_document(config, owned_global={}, owned_runner={}, credentials={})


# --- refusals -----------------------------------------------------------------------------------------------------

REFUSALS: list[tuple[dict[str, Any], str]] = [
    ({"kuberentes": {}}, 'unknown field "spec.config.kuberentes"'),
    ({"kubernetes": {"imagee": "x"}}, 'unknown field "spec.config.kubernetes.imagee"'),
    ({"kubernetes": {"volumes": {"hostPath": [{"name": "a", "mountpath": "/a"}]}}}, "volumes.hostPath[0].mountpath"),
    ({"cache": {"type": "s3", "s3": {"bucket": "x"}}}, 'unknown field "spec.config.cache.s3.bucket"'),
    ({"feature_flags": {}}, 'unknown field "spec.config.feature_flags"'),
    ({"concurrent": "ten"}, "spec.config.concurrent: Invalid value: must be of type integer"),
    (
        {"kubernetes": {"privileged": "yes"}},
        "spec.config.kubernetes.privileged: Invalid value: must be of type boolean",
    ),
    ({"featureFlags": {"FF_USE_FASTZIP": "true"}}, "spec.config.featureFlags.FF_USE_FASTZIP: Invalid value"),
    ({"environment": "A=b"}, "spec.config.environment: Invalid value: must be of type array"),
    ({"kubernetes": {"nodeTolerations": {"a": 1}}}, "spec.config.kubernetes.nodeTolerations.a: Invalid value"),
    ({"unhealthyInterval": "an hour"}, "spec.config.unhealthyInterval: Invalid value: should match"),
    ({"logLevel": "loud"}, "spec.config.logLevel: Unsupported value"),
    ({"concurrent": 0}, "spec.config.concurrent: Invalid value: should be greater than or equal to 1"),
    ({"url": "https://other.example.com"}, "url is set by the operator"),
    ({"token": "glrt-x"}, "token is set by the operator"),
    ({"tokenExpiresAt": "2030-01-01T00:00:00Z"}, "tokenExpiresAt is set by the operator"),
    ({"listenAddress": ":1234"}, "listenAddress is set by the operator"),
    ({"id": 3}, "id is set by the operator"),
    ({"cache": {"type": "s3", "s3": {"secretKey": "plain"}}}, "secretKey is a credential: put it in a Secret"),
    ({"cache": {"type": "azure", "azure": {"accountKey": "plain"}}}, "accountKey is a credential"),
    ({"kubernetes": {"bearerToken": "plain"}}, "bearerToken is a credential"),
    ({"cache": {"path": "x"}}, "spec.config.cache.type: Required value"),
]


@pytest.mark.parametrize(("config", "message"), REFUSALS, ids=[m[:40] for _, m in REFUSALS])
def test_schema_refuses_with_the_path(config: dict[str, Any], message: str) -> None:
    errors = validate(SCHEMA, config)
    assert any(message in e for e in errors), errors


def test_schema_is_structural() -> None:
    def walk(node: dict[str, Any], path: str) -> None:
        special = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
        assert "type" in node or special, path
        assert not ("properties" in node and "additionalProperties" in node), path
        for k, v in node.get("properties", {}).items():
            walk(v, f"{path}.{k}")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}.*")
        if "items" in node:
            walk(node["items"], f"{path}[]")

    walk(SCHEMA, "spec.config")
    assert len(json.dumps(SCHEMA)) < 250_000  # the CRD must stay well under etcd's and kubectl's size limits
    short = spec_config_schema(descriptions="short")
    lean = spec_config_schema(descriptions="none")
    assert len(json.dumps(lean)) < len(json.dumps(short)) < len(json.dumps(SCHEMA))
    assert len(json.dumps(lean)) < len(json.dumps(SCHEMA)) / 1.5
    assert validate(lean, KITCHEN_SINK) == [] and validate(short, KITCHEN_SINK) == []


# --- import-config ------------------------------------------------------------------------------------------------

OWNED = {"name", "url", "id", "token", "token_obtained_at", "token_expires_at", "tls-ca-file"}


@pytest.mark.parametrize("path", sorted(DATA.glob("*.toml")), ids=lambda p: p.name)
def test_import_config_renders_back_to_an_equivalent_config(path: Path) -> None:
    original = tomllib.loads(path.read_text())
    imported = import_config(original)
    assert len(imported) == len(original["runners"])
    for item, entry in zip(imported, original["runners"], strict=True):
        config = item.manifest["spec"]["config"]
        assert validate(SCHEMA, config) == [], item.warnings
        assert "glrt-" not in json.dumps(item.manifest)
        refs = credential_plan(config)
        fake = {ref: f"from-secret:{'.'.join(p)}" for p, ref in refs.inline.items()}
        got = _render(config, fake)
        expected = copy.deepcopy({k: v for k, v in original.items() if k not in ("runners", "listen_address")})
        if expected.get("check_interval") == 0:
            del expected["check_interval"]
        want_runner = {k: v for k, v in entry.items() if k not in OWNED}
        for p in refs.inline:
            table = want_runner
            for part in p[:-1]:
                table = table[part]
            table[p[-1]] = f"from-secret:{'.'.join(p)}"
        for p, file_path in refs.files.items():
            want_runner["cache"]["gcs"][p[-1]] = file_path
        got_runner = {k: v for k, v in got.pop("runners")[0].items() if k not in OWNED}
        if isinstance(want_runner.get("kubernetes", {}).get("pull_policy"), str):
            want_runner["kubernetes"]["pull_policy"] = [want_runner["kubernetes"]["pull_policy"]]
        got.pop("listen_address")
        assert got == expected
        assert got_runner == want_runner


def test_repeated_register_entries_are_each_imported_with_a_warning() -> None:
    imported = import_config(tomllib.loads((DATA / "repeated-register.toml").read_text()))
    assert [i.manifest["metadata"]["name"] for i in imported] == ["builder", "builder-2", "builder-3"]
    assert all("one of 3 [[runners]] entries" in i.warnings[0] for i in imported)


def test_import_replaces_plain_credentials_with_secret_refs() -> None:
    imported = import_config(tomllib.loads((DATA / "chart-kubernetes.toml").read_text()))
    s3 = imported[0].manifest["spec"]["config"]["cache"]["s3"]
    assert "accessKey" not in s3 and s3["accessKeySecretRef"]["name"] == "CHANGE-ME"
    assert "AKIAEXAMPLE" not in json.dumps(imported[0].manifest)
    assert any("AccessKey: a credential" in w for w in imported[0].warnings)


def test_import_config_cli_prints_applicable_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from glrt_operator.cli import main

    assert main(["import-config", str(DATA / "repeated-register.toml"), "--namespace", "ci"]) == 0
    out = capsys.readouterr().out
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert [d["metadata"] for d in docs] == [
        {"name": n, "namespace": "ci"} for n in ("builder", "builder-2", "builder-3")
    ]
    assert out.count("# WARNING: entry") == 3
    assert "glrt-REDACTED" not in out


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("https://gitlab.example.com", "https://gitlab.example.com/", True),
        ("https://gitlab.example.com", "HTTPS://GitLab.Example.COM:443", True),
        ("http://gitlab.example.com:80/", "http://gitlab.example.com", True),
        ("https://gitlab.example.com/gitlab/", "https://gitlab.example.com/gitlab", True),
        ("https://user@gitlab.example.com", "https://gitlab.example.com", True),
        ("https://gitlab.example.com", "http://gitlab.example.com", False),
        ("https://gitlab.example.com", "https://gitlab.example.com:8443", False),
        ("https://gitlab.example.com/a", "https://gitlab.example.com/A", False),  # a path is case-sensitive
        ("https://gitlab.example.com/a", "https://gitlab.example.com", False),
        ("https://gitlab.example.com:99999", "https://gitlab.example.com:99999/", False),  # unparsable: as written
    ],
)
def test_gitlab_urls_are_compared_as_gitlab_reads_them(a: str, b: str, same: bool) -> None:
    from glrt_operator.runner_config.importer import gitlab_identity

    assert (gitlab_identity(a) == gitlab_identity(b)) is same


def test_one_gitlab_spelled_two_ways_warns_on_each_entry_from_the_cli() -> None:
    import sys

    import yaml

    # The installed command, as a user runs it (`glrt-operator import-config`): python -m runs the same main().
    result = subprocess.run(
        [sys.executable, "-m", "glrt_operator", "import-config", str(DATA / "url-spellings.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = result.stdout
    manifests = out.split("---\n")[1:]
    assert len(manifests) == 3 and [len(list(yaml.safe_load_all(m))) for m in manifests] == [1, 1, 1]
    for i, url in enumerate(["https://gitlab.example.com", "https://gitlab.example.com/"]):
        assert f"# WARNING: entry {i + 1} is one of 2 [[runners]] entries for the GitLab at {url} " in manifests[i]
    assert "WARNING: entry 3" not in manifests[2]  # another GitLab, under a path of the same host


@pytest.mark.parametrize(
    ("executor", "extra", "needs"),
    [
        ("kubernetes", {}, None),
        (None, {}, None),
        ("docker", {"docker": {"host": "tcp://docker.internal:2375"}}, None),
        ("docker", {"docker": {"image": "alpine"}}, "needs a Docker daemon"),
        ("docker-windows", {}, "manager pods run Linux"),
        ("docker+machine", {}, "docker-machine"),
        ("docker-autoscaler", {}, "fleeting plugin"),
        ("instance", {}, "fleeting plugin"),
        ("shell", {}, "inside the manager pod itself"),
        ("custom", {}, "must be in the manager image"),
        ("ssh", {}, "identity_file"),
        ("parallels", {}, "no hypervisor"),
        ("virtualbox", {}, "no hypervisor"),
        ("teleport", {}, "not an executor gitlab-runner knows"),
    ],
)
def test_import_warns_about_executors_a_manager_pod_cannot_run(
    executor: str | None, extra: dict[str, Any], needs: str | None
) -> None:
    entry: dict[str, Any] = {"name": "r", "url": "https://gitlab.example.com", "token": "glrt-x", **extra}
    if executor is not None:
        entry["executor"] = executor
    (imported,) = import_config({"runners": [entry]})
    found = [w for w in imported.warnings if "executor" in w]
    if needs is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith(f"entry 1: executor {executor!r} ") and needs in found[0]
        assert imported.manifest["spec"]["config"]["executor"] == executor  # imported as written, with the warning


# --- the operator: its builder, its CRD -----------------------------------------------------------------------


def test_kitchen_sink_renders_through_the_operators_builder() -> None:
    from glrt_operator.runners.builders import render_config_toml
    from glrt_operator.runners.model import RunnerSpec

    spec = RunnerSpec.parse(
        {
            "gitlab": {"url": OWNED_RUNNER["url"], "credentialsSecretRef": {"name": "api"}},
            "runnerType": "instance_type",
            "config": copy.deepcopy(KITCHEN_SINK),
        }
    )
    plan = credential_plan(spec.config.values)
    secrets = {SecretRef("s3-creds", "access"): "access-value", SecretRef("s3-creds", "secret"): "secret-value"}
    rendered = render_config_toml(
        spec,
        runner_name=str(OWNED_RUNNER["name"]),
        runner_id=int(OWNED_RUNNER["id"]),
        token=str(OWNED_RUNNER["token"]),
        default_namespace="not-used",  # spec.config.kubernetes.namespace wins
        credentials=resolved_credentials(plan, secrets),
    )
    assert tomllib.loads(rendered.text) == EXPECTED
    # The value read from the Secret is written into config.toml (which lives in a Secret).
    assert "secret-value" in rendered.text


def test_operator_defaults_are_valid_settings_the_user_can_override() -> None:
    from glrt_operator.runners.builders import render_config_toml
    from glrt_operator.runners.model import CONFIG_DEFAULTS, RunnerSpec

    assert validate(SCHEMA, dict(CONFIG_DEFAULTS)) == []
    base: dict[str, Any] = {"gitlab": {"url": "https://gitlab.example.com", "credentialsSecretRef": {"name": "a"}}}
    base["runnerType"] = "instance_type"

    def rendered(config: dict[str, Any]) -> dict[str, Any]:
        text = render_config_toml(RunnerSpec.parse({**base, "config": config}), runner_name="r", runner_id=1, token="t")
        return tomllib.loads(text.text)

    default = rendered({})
    assert default["runners"][0]["request_concurrency"] == CONFIG_DEFAULTS["requestConcurrency"]
    assert default["concurrent"] == CONFIG_DEFAULTS["concurrent"]
    assert rendered({"requestConcurrency": 7})["runners"][0]["request_concurrency"] == 7
    assert rendered({"kubernetes": {"cpuLimit": "1"}})["runners"][0]["kubernetes"] == {
        "image": CONFIG_DEFAULTS["kubernetes"]["image"],
        "privileged": False,
        "cpu_limit": "1",
    }


def test_image_pull_secrets_for_job_pods() -> None:
    """DeployToken Secrets reach job pods: spec.config.kubernetes.imagePullSecrets -> image_pull_secrets."""
    config = {"kubernetes": {"imagePullSecrets": ["registry-pull"]}}
    assert validate(SCHEMA, config) == []
    assert _render(config)["runners"][0]["kubernetes"]["image_pull_secrets"] == ["registry-pull"]


CRD_FILES = [ROOT / "crds" / "runners.glrt.dev.yaml", ROOT / "helm/glrt-operator/files/crds/runners.glrt.dev.yaml"]


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_crd_holds_the_generated_config_schema(path: Path) -> None:
    import yaml

    from glrt_operator.core.crd_versions import without_descriptions
    from glrt_operator.runner_config.crd import with_generated_config

    text = path.read_text()
    assert with_generated_config(text) == text, f"{path.relative_to(ROOT)} is stale: run make crds"
    crd = yaml.safe_load(text)
    storage, *deprecated = crd["spec"]["versions"]
    config = storage["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["config"]
    assert config == spec_config_schema(descriptions="short")
    for version in deprecated:  # the same schema without descriptions (tests/unit/test_crd_versions.py)
        config = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["config"]
        assert config == without_descriptions(spec_config_schema(descriptions="short"))


def test_crd_fits_client_side_kubectl_apply() -> None:
    """`kubectl apply` (client-side) stores the whole object as JSON in an annotation, and the API server refuses
    more than 256 KiB of annotations. Both served versions count (the deprecated one carries no descriptions to
    fit): keep at least 16 KiB for other fields and newer gitlab-runner versions (docs/operations/api-versions.md)."""
    import yaml

    crd = yaml.safe_load(CRD_FILES[0].read_text())
    size = len(json.dumps(crd, separators=(",", ":")).encode())
    assert size < 262_144 - 16 * 1024, f"the Runner CRD is {size} bytes as JSON; the limit is 262144"


def _documented_yaml_blocks() -> list[Any]:
    """The YAML examples of the README and the operations docs."""
    import yaml

    pages = [ROOT / "README.md", *sorted((ROOT / "docs" / "operations").glob("*.md"))]
    text = "\n".join(page.read_text() for page in pages)
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S)]


def test_documented_manifests_are_valid() -> None:
    """examples/ and the documented Runners (README, docs/operations) and the spec.config example."""
    import yaml

    from glrt_operator.runners.model import RunnerSpec

    runners = [yaml.safe_load((ROOT / "examples" / "runner.yaml").read_text())]
    blocks = _documented_yaml_blocks()
    runners += [b for b in blocks if isinstance(b, dict) and b.get("kind") == "Runner"]
    configs = [b["config"] for b in blocks if isinstance(b, dict) and set(b) == {"config"}]
    assert len(runners) >= 2 and len(configs) == 1
    for runner in runners:
        assert validate(SCHEMA, runner["spec"].get("config", {})) == []
        RunnerSpec.parse(runner["spec"])
    assert validate(SCHEMA, configs[0]) == []
    assert _leaves(configs[0]) >= 20
