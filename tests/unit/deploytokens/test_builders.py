from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

from glrt_operator.core.objects import encoded
from glrt_operator.deploytokens import builders
from glrt_operator.deploytokens.model import SecretSpec

TOKEN = "gldt-" + "Ab3" * 6 + "xy"


def fp(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def decode(value: str) -> str:
    return base64.b64decode(value).decode()


def test_token_name_marks_owner_and_fits_gitlab() -> None:
    uid = "3f2b9c1e-aaaa-bbbb-cccc-0123456789ab"
    assert builders.token_name("ci", "registry-pull", uid) == "glrt-ci-registry-pull-3f2b9c1e"
    long = builders.token_name("n" * 63, "x" * 253, uid)
    assert len(long) == 255 and long.endswith("-3f2b9c1e") and long.startswith("glrt-nnn")
    assert builders.token_name("ci", "a", uid) != builders.token_name("ci", "a", "4" + uid[1:])


def test_dockerconfigjson_secret() -> None:
    spec = SecretSpec(name="registry-pull", type="kubernetes.io/dockerconfigjson", registry="registry.example.com")
    obj = builders.secret(
        spec,
        owner_name="pull",
        owner_uid="uid-1",
        namespace="ci",
        token_id=12,
        username="gitlab+deploy-token-12",
        token=TOKEN,
        expires_at=datetime(2026, 12, 23, tzinfo=UTC),
    )
    assert obj["type"] == "kubernetes.io/dockerconfigjson"
    meta = obj["metadata"]
    assert (meta["name"], meta["namespace"]) == ("registry-pull", "ci")
    assert meta["annotations"] == {
        "glrt.dev/deploy-token-id": "12",
        "glrt.dev/deploy-token-expires-at": "2026-12-23T00:00:00Z",
    }
    (owner,) = meta["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("DeployToken", "uid-1", True)
    config = json.loads(decode(obj["data"][".dockerconfigjson"]))
    entry = config["auths"]["registry.example.com"]
    assert entry["username"] == "gitlab+deploy-token-12"
    assert fp(entry["password"]) == fp(TOKEN)
    assert fp(decode(entry["auth"])) == fp(f"gitlab+deploy-token-12:{TOKEN}")
    # the token is in data only
    assert fp(TOKEN) not in json.dumps(meta) and TOKEN not in json.dumps(meta)
    assert builders.secret_token_id(obj["metadata"]["annotations"]) == 12


def test_basic_auth_secret_without_expiry() -> None:
    spec = SecretSpec(name="creds", type="kubernetes.io/basic-auth", registry=None)
    obj = builders.secret(
        spec, owner_name="c", owner_uid="u", namespace="ci", token_id=3, username="bot", token=TOKEN, expires_at=None
    )
    assert obj["type"] == "kubernetes.io/basic-auth"
    assert decode(obj["data"]["username"]) == "bot"
    assert fp(decode(obj["data"]["password"])) == fp(TOKEN)
    assert set(obj["data"]) == {"username", "password"}
    assert "glrt.dev/deploy-token-expires-at" not in obj["metadata"]["annotations"]


def test_secret_token_id_tolerates_foreign_secrets() -> None:
    assert builders.secret_token_id({}) is None
    assert builders.secret_token_id({"glrt.dev/deploy-token-id": "x"}) is None


def test_credentials_read_back_from_either_format() -> None:
    docker = SecretSpec(name="s", type="kubernetes.io/dockerconfigjson", registry="registry.example.com")
    data = {k: decode(v) for k, v in builders.secret_data(docker, "u", TOKEN).items()}
    creds = builders.credentials(docker, data)
    assert creds is not None and creds[0] == "u" and fp(creds[1]) == fp(TOKEN)
    moved = SecretSpec(name="s", type="kubernetes.io/dockerconfigjson", registry="elsewhere:5050")
    assert builders.credentials(moved, data) == creds  # a registry change still finds the token
    basic = SecretSpec(name="s", type="kubernetes.io/basic-auth", registry=None)
    data = {k: decode(v) for k, v in builders.secret_data(basic, "u", TOKEN).items()}
    assert builders.credentials(basic, data) == creds
    assert encoded(data) == builders.secret_data(basic, "u", TOKEN)
    for broken in ({}, {".dockerconfigjson": "not json"}, {".dockerconfigjson": '{"auths": {"r": {}}}'}):
        assert builders.credentials(docker, broken) is None
    assert builders.credentials(basic, {"username": "u"}) is None
