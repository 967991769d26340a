"""No token anywhere the operator writes: its output, the Events it posts, the Runner's status and metadata.

Every test that runs the operator is scanned on teardown (tests/e2e/conftest.py); this one walks the paths where a
token is most likely to slip into a message: refused credentials, creation, rotation, revocation, deletion."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import PAT, Runners, assert_no_secrets, issued_secrets
from tests.fake_gitlab import FakeGitLab
from tests.harness.operator import OperatorProcess
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.cluster


def test_tokens_never_leave_the_secrets(runners: Runners, gitlab: FakeGitLab, operator: OperatorProcess) -> None:
    wrong = "glpat-wrong-token-that-must-not-leak"
    runners.put_secret("gitlab-api", {"token": wrong})
    runners.create(runners.manifest())
    runners.wait_reason("AccessTokenInvalid")
    runners.put_secret("gitlab-api", {"token": PAT})
    runner_id = runners.wait_ready(timeout=60)["status"]["runnerId"]

    runners.patch_spec(tokenRotation={"requestedAt": "leak-check"})
    wait_for(lambda: runners.get()["status"].get("rotationRequestedAt") == "leak-check", timeout=30)
    gitlab.revoke_token(runner_id)
    wait_for(lambda: "TokenRefused" in runners.event_reasons(), timeout=30)
    runners.wait_ready()
    runners.delete()
    wait_for(lambda: not runners.exists(), timeout=30)

    secrets = issued_secrets(gitlab) | {wrong}
    assert len(secrets) >= 5  # the access tokens and at least three runner tokens were handled
    output = operator.output()
    assert "AccessTokenInvalid" in output and "rotated the token" in output  # the scan reads real output
    leaked = sum(secret in output for secret in secrets)
    assert leaked == 0
    assert_no_secrets(output, runners, gitlab)
