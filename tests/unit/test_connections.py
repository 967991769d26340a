"""The pure parts of connections: spec.gitlab with a connectionRef, namespace selection, the connection's spec, and
the rules about GitLab's release and the token (supported range, scopes, self-rotation, renewal dates)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from glrt_operator.connections import model
from glrt_operator.core.connection import ConnectionRef, allows, parse_gitlab, selector_matches
from glrt_operator.core.gitlab import AccessTokenInfo, InstanceInfo, UnusableAnswer
from glrt_operator.core.spec import SpecError

REPO = Path(__file__).resolve().parents[2]


def token(*scopes: str, expires: date | None = date(2027, 3, 1)) -> AccessTokenInfo:
    return AccessTokenInfo(id=1, name="ops", scopes=scopes, expires_at=expires, active=True)


def gitlab(version: str) -> InstanceInfo:
    return InstanceInfo.from_json({"version": version, "revision": "abc"})


def test_connection_ref_parses_and_refuses_mixed_or_wrong_kind() -> None:
    parsed = parse_gitlab({"gitlab": {"connectionRef": {"name": "main"}}})
    assert parsed.connection == ConnectionRef("GitLabConnection", "main") and parsed.url == ""
    cluster = parse_gitlab({"gitlab": {"connectionRef": {"kind": "ClusterGitLabConnection", "name": "m"}}})
    assert cluster.connection == ConnectionRef("ClusterGitLabConnection", "m")
    with pytest.raises(SpecError, match="set either connectionRef or url, not both"):
        parse_gitlab({"gitlab": {"url": "https://g.example", "connectionRef": {"name": "m"}}})
    with pytest.raises(SpecError, match="is not GitLabConnection or ClusterGitLabConnection"):
        parse_gitlab({"gitlab": {"connectionRef": {"kind": "Issuer", "name": "m"}}})
    with pytest.raises(SpecError, match=r"connectionRef\.name is required"):
        parse_gitlab({"gitlab": {"connectionRef": {}}})


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "a", "x": "y"}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "b"}, False),
        ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]}, {"team": "b"}, True),
        ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}, {}, False),
        ({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, {"team": ""}, True),
        ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, {"team": ""}, False),
        ({"matchExpressions": [{"key": "team", "operator": "Near"}]}, {"team": "a"}, False),
    ],
)
def test_selector(selector: dict[str, object], labels: dict[str, str], expected: bool) -> None:
    assert selector_matches(selector, labels) is expected


def test_allowed_namespaces_by_name_or_selector() -> None:
    allowed = {"names": ["a"], "selector": {"matchLabels": {"ci": "yes"}}}
    assert allows(allowed, "a", {})
    assert allows(allowed, "b", {"ci": "yes"})
    assert not allows(allowed, "b", {"ci": "no"})
    assert not allows({"names": ["a"]}, "b", {"ci": "yes"})
    assert not allows(allowed, "gone", None)  # a namespace that does not exist has no labels


def test_connection_spec_defaults_and_limits() -> None:
    base = {"url": "https://gitlab.example.com", "credentialsSecretRef": {"name": "t"}}
    spec = model.ConnectionSpec.parse(base)
    assert spec.rotation_enabled and spec.renew_before == timedelta(days=30) and spec.valid_for == timedelta(days=90)
    with pytest.raises(SpecError, match="at most 8760h"):
        model.ConnectionSpec.parse({**base, "tokenRotation": {"validFor": "9000h"}})
    with pytest.raises(SpecError, match="longer than"):
        model.ConnectionSpec.parse({**base, "tokenRotation": {"validFor": "100h", "renewBefore": "200h"}})
    with pytest.raises(SpecError, match=r"spec.url"):
        model.ConnectionSpec.parse({**base, "url": "gitlab.example.com"})


def test_recovery_secret_ref() -> None:
    base = {"url": "https://gitlab.example.com", "credentialsSecretRef": {"name": "t"}}
    assert model.ConnectionSpec.parse(base).recovery is None
    spec = model.ConnectionSpec.parse({**base, "tokenRotation": {"recoverySecretRef": {"name": "rescue"}}})
    assert spec.recovery is not None and (spec.recovery.name, spec.recovery.key) == ("rescue", "token")
    with pytest.raises(SpecError, match=r"another token than spec\.credentialsSecretRef"):
        model.ConnectionSpec.parse({**base, "tokenRotation": {"recoverySecretRef": {"name": "t"}}})
    with pytest.raises(SpecError, match=r"recoverySecretRef\.name"):
        model.ConnectionSpec.parse({**base, "tokenRotation": {"recoverySecretRef": {"name": "Not A Name"}}})


def test_instance_edition_and_release() -> None:
    assert gitlab("18.1.1-ee").enterprise and gitlab("18.1.1-ee").release == (18, 1, 1)
    assert not gitlab("17.0.0").enterprise
    assert InstanceInfo.from_json({"version": "18.1.1", "enterprise": True}).enterprise
    with pytest.raises(UnusableAnswer):
        InstanceInfo.from_json({"version": "latest"})


def test_supported_range_and_features() -> None:
    assert model.too_old(gitlab("15.9.9")) is not None and "15.10" in (model.too_old(gitlab("15.9.9")) or "")
    assert model.too_old(gitlab("15.10.0")) is None
    assert "runnerManagers" not in model.features(gitlab("16.11.0"))
    assert {"runnerManagers", "selfRotateScope"} <= set(model.features(gitlab("17.9.0")))


def test_scopes_and_self_rotation() -> None:
    assert model.scopes_missing(token("api")) is None
    assert model.scopes_missing(token("create_runner", "manage_runner")) is None
    assert "read_api" in (model.scopes_missing(token("read_api")) or "")
    assert model.rotation_problem(gitlab("16.10.0"), token("api")) is None
    assert "16.10" in (model.rotation_problem(gitlab("16.9.0"), token("api")) or "")
    assert "17.9" in (model.rotation_problem(gitlab("17.8.0"), token("self_rotate", "create_runner")) or "")
    assert model.rotation_problem(gitlab("17.9.0"), token("self_rotate", "create_runner")) is None
    assert model.rotation_problem(gitlab("18.0.0"), token("create_runner", "manage_runner")) is not None


def test_renewal_dates() -> None:
    # GitLab refuses a token from 00:00 UTC of its expires_at date.
    assert model.expiry_instant(date(2027, 3, 1)) == datetime(2027, 3, 1, tzinfo=UTC)
    assert model.renewal_time(date(2027, 3, 1), timedelta(days=30)) == datetime(2027, 1, 30, tzinfo=UTC)
    assert model.renewal_time(None, timedelta(days=30)) is None
    noon, midnight = datetime(2026, 12, 2, 12, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)
    # At least validFor ahead (the next date), so a renewed token is never due again at once.
    assert model.next_expiry(noon, timedelta(days=90)) == date(2027, 3, 3)
    assert model.next_expiry(midnight, timedelta(days=90)) == date(2027, 3, 2)
    assert model.next_expiry(noon, timedelta(hours=49)) == date(2026, 12, 5)
    assert model.next_expiry(noon, timedelta(days=365)) == date(2027, 12, 2)  # GitLab's limit: today + 365


@pytest.mark.parametrize("plural", ["gitlabconnections", "clustergitlabconnections"])
def test_crd_defaults_are_the_model_defaults(plural: str) -> None:
    crd = yaml.safe_load((REPO / "crds" / f"{plural}.glrt.dev.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rotation = spec["properties"]["tokenRotation"]["properties"]
    filled = {key: value["default"] for key, value in rotation.items() if "default" in value}
    parsed = model.ConnectionSpec.parse({"url": "https://g.example", "credentialsSecretRef": {"name": "t"}})
    assert (
        model.ConnectionSpec.parse(
            {"url": "https://g.example", "credentialsSecretRef": {"name": "t"}, "tokenRotation": filled}
        )
        == parsed
    )
    assert ("allowedNamespaces" in spec["required"]) is (plural == "clustergitlabconnections")


def test_a_renew_before_no_token_can_outlive_is_refused() -> None:
    base = {"url": "https://g.example", "credentialsSecretRef": {"name": "t"}}
    evening = datetime(2026, 12, 2, 23, tzinfo=UTC)
    capped = model.ConnectionSpec.parse({**base, "tokenRotation": {"renewBefore": "8759h", "validFor": "8760h"}})
    assert "shorten renewBefore" in (model.renewal_too_long(evening, capped) or "")
    assert model.renewal_too_long(evening, model.ConnectionSpec.parse(base)) is None
