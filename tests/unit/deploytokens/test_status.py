"""The typed DeployToken status: every field is declared in the CRD (the apiserver prunes undeclared ones), and
it round-trips through the planner's view."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from glrt_operator.core.status import camel
from glrt_operator.deploytokens.planner import Retiring
from glrt_operator.deploytokens.status import DeployTokenStatus, retiring_status

CRD = Path(__file__).resolve().parents[3] / "crds" / "deploytokens.glrt.dev.yaml"


def test_every_status_field_is_declared_in_the_crd() -> None:
    schema = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    declared = set(schema["properties"]["status"]["properties"])
    fields = {camel(f.name) for f in dataclasses.fields(DeployTokenStatus)}
    assert fields == declared


def test_patch_maps_names_and_refuses_unknown_fields() -> None:
    assert DeployTokenStatus.patch(token_id=3, renewal_time=None) == {"tokenId": 3, "renewalTime": None}
    with pytest.raises(TypeError):
        DeployTokenStatus.patch(token=3)


def test_planner_state_from_status_and_secret() -> None:
    revoke_at = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    raw = {
        "tokenId": 5,
        "issuedAt": "2026-11-01T00:00:00Z",
        "retiring": list(retiring_status((Retiring(4, revoke_at),))),
        "somethingKopfWrote": {},
    }
    state = DeployTokenStatus.from_dict(raw).planner_state(5, "2026-11-01T00:00:00Z")
    assert state.token_id == 5 and state.secret_token_id == 5
    assert state.issued_at == state.secret_issued_at == datetime(2026, 11, 1, tzinfo=UTC)
    assert state.retiring == (Retiring(4, revoke_at),)
