"""The full spec.config through the operator process: a kitchen-sink Runner whose cache credentials come from a
Secret that does not exist yet waits with a condition naming it (nothing created in GitLab, one Event, no hot
loop), becomes Ready once the Secret is created, and its config.toml holds every setting and the credentials,
which appear nowhere else."""

from __future__ import annotations

import copy
import json
import time
import tomllib

import pytest

from tests.e2e.conftest import Runners, fingerprint
from tests.fake_gitlab import FakeGitLab
from tests.harness.operator import OperatorProcess
from tests.unit.test_runner_config import EXPECTED, KITCHEN_SINK

pytestmark = pytest.mark.cluster

ACCESS, SECRET = "AKIA-e2e-access-0001", "s3-e2e-secret-value-0002"  # stand-ins, compared by fingerprint


def test_kitchen_sink_waits_for_its_credentials_then_renders_everything(
    runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess
) -> None:
    # Job pods in the Runner's own namespace: another one would have to accept it (docs/operations/jobs.md).
    sink = copy.deepcopy(KITCHEN_SINK)
    sink["kubernetes"]["namespace"] = runners.namespace
    runners.create(runners.manifest(config=sink, replicas=1))
    condition = runners.wait_reason("ConfigSecretMissing")
    assert condition["status"] == "False"
    assert "'s3-creds'" in condition["message"] and "spec.config.cache.s3." in condition["message"]
    time.sleep(5)  # several back-off periods of the test operator (0.5 s doubling to 4 s)
    assert gitlab.calls == [] and not gitlab.runners  # stopped before GitLab
    assert runners.event_reasons().count("ConfigSecretMissing") == 1  # the same problem: one Event

    runners.put_secret("s3-creds", {"access": ACCESS + "\n", "secret": SECRET})
    body = runners.wait_ready()
    config = tomllib.loads(runners.secret_data(body["status"]["configSecretName"])["config.toml"])
    runner, expected = config["runners"][0], copy.deepcopy(EXPECTED["runners"][0])
    expected["kubernetes"]["namespace"] = runners.namespace
    s3 = runner["cache"].pop("s3")
    assert fingerprint(s3.pop("AccessKey")) == fingerprint(ACCESS)
    assert fingerprint(s3.pop("SecretKey")) == fingerprint(SECRET)
    assert s3 == {k: v for k, v in expected["cache"]["s3"].items() if k not in ("AccessKey", "SecretKey")}
    owned = {"name", "url", "id", "token"}
    assert {k: v for k, v in runner.items() if k not in owned} == {
        k: v for k, v in expected.items() if k not in owned and k != "cache"
    } | {"cache": {k: v for k, v in expected["cache"].items() if k != "s3"}}
    assert {k: v for k, v in config.items() if k != "runners"} == {k: v for k, v in EXPECTED.items() if k != "runners"}

    seen = json.dumps([runners.get().get("status", {}), [e.message for e in runners.events()]]) + operator.output()
    leaked = [fingerprint(v) for v in (ACCESS, SECRET) if v in seen]
    assert not leaked, f"credentials (sha256 {leaked}) in the status, Events or the operator's output"
