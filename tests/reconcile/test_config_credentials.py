"""spec.config's Secret references: read before anything is written, a missing Secret or key is a condition that
names it (never a value), the values reach config.toml only, and credential files are mounted into the pods."""

from __future__ import annotations

import hashlib
import json
import logging
import tomllib
from typing import Any

import kopf
import pytest

from glrt_operator.controller.runtime import CONFIG
from glrt_operator.core.errors import ReconcileError
from glrt_operator.runners import handlers

from .conftest import Env
from .test_handlers import call

ACCESS, SECRET = "AKIA-test-access-0001", "s3-test-secret-value-0002"  # stand-ins, compared by fingerprint
S3 = {
    "type": "s3",
    "s3": {
        "bucketName": "cache",
        "accessKeySecretRef": {"name": "s3-creds", "key": "access"},
        "secretKeySecretRef": {"name": "s3-creds", "key": "secret"},
    },
}


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def config_toml(env: Env) -> dict[str, Any]:
    return tomllib.loads(env.kube.secrets["builds-runner-config"]["data"]["config.toml"])


def leaked(env: Env, *values: str) -> bool:
    seen = json.dumps([env.kube.status, env.events, env.kube.statefulsets])
    return any(v in seen for v in values)


def test_missing_secret_stops_before_gitlab_and_names_it(env: Env) -> None:
    env.spec["config"] = {"cache": S3}
    with pytest.raises(ReconcileError) as caught:
        env.reconcile()
    error = caught.value
    assert error.reason == "ConfigSecretMissing" and not error.permanent
    assert "'s3-creds'" in error.message and "spec.config.cache.s3.accessKeySecretRef" in error.message
    assert env.posts() == 0 and "builds-runner-config" not in env.kube.secrets


def test_missing_key_names_the_key(env: Env) -> None:
    env.spec["config"] = {"cache": S3}
    env.kube.put_secret("s3-creds", {"access": ACCESS})
    with pytest.raises(ReconcileError) as caught:
        env.reconcile()
    assert caught.value.reason == "ConfigSecretMissing"
    assert "no key 'secret'" in caught.value.message and "secretKeySecretRef" in caught.value.message
    assert not any(v in caught.value.message for v in (ACCESS, SECRET)) and env.posts() == 0


def test_values_reach_config_toml_and_nothing_else(env: Env) -> None:
    env.spec["config"] = {"cache": S3}
    env.kube.put_secret("s3-creds", {"access": ACCESS + "\n", "secret": SECRET})
    env.reconcile()
    s3 = config_toml(env)["runners"][0]["cache"]["s3"]
    assert fingerprint(s3["AccessKey"]) == fingerprint(ACCESS)  # the trailing newline of --from-file dropped
    assert fingerprint(s3["SecretKey"]) == fingerprint(SECRET)
    assert not leaked(env, ACCESS, SECRET)


def test_credential_file_is_mounted_where_config_toml_points(env: Env) -> None:
    env.spec["config"] = {
        "cache": {"type": "gcs", "gcs": {"credentialsFileSecretRef": {"name": "gcs", "key": "sa.json"}}}
    }
    with pytest.raises(ReconcileError) as caught:
        env.reconcile()
    assert caught.value.reason == "ConfigSecretMissing" and "credentialsFileSecretRef" in caught.value.message

    env.kube.put_secret("gcs", {"sa.json": '{"type": "service_account"}'})
    env.reconcile()
    path = config_toml(env)["runners"][0]["cache"]["gcs"]["CredentialsFile"]
    pod = env.kube.statefulsets["builds"]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "gcs"]
    assert volume["secret"]["items"] == [{"key": "sa.json", "path": "value"}]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    assert f"{mount['mountPath']}/value" == path and mount["readOnly"] is True
    assert "service_account" not in config_toml(env)["runners"][0]["cache"]["gcs"]["CredentialsFile"]


def test_handler_reports_one_condition_and_retries_with_backoff(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    posted: list[tuple[str, str, str]] = []
    monkeypatch.setattr(kopf, "event", lambda body, *, type, reason, message: posted.append((type, reason, message)))
    env.spec["config"] = {"cache": S3}
    env.kube.put_secret("s3-creds", {"access": ACCESS})
    caplog.set_level(logging.DEBUG)
    for retry in (0, 1):
        with pytest.raises(kopf.TemporaryError) as caught:
            call(handlers.on_runner_created_or_changed, env, retry=retry)
        assert caught.value.delay == CONFIG.backoff(retry)
    ready = next(c for c in env.kube.status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ConfigSecretMissing"
    assert [p[1] for p in posted] == ["ConfigSecretMissing"]  # one Event for the same problem
    assert env.posts() == 0
    # Created later: the next retry goes through.
    env.kube.put_secret("s3-creds", {"access": ACCESS, "secret": SECRET})
    call(handlers.on_runner_created_or_changed, env, retry=2)
    ready = next(c for c in env.kube.status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and env.posts() == 1
    assert not leaked(env, ACCESS, SECRET) and not any(v in caplog.text for v in (ACCESS, SECRET))
    assert not any(ACCESS in p[2] or SECRET in p[2] for p in posted)
