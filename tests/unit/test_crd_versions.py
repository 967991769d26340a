"""Every CRD serves its storage version and, deprecated, its older ones: the same schema (so the API server converts
by rewriting apiVersion alone), the same printer columns, a warning naming the replacement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from glrt_operator.core import api
from glrt_operator.core.crd_versions import with_deprecated_versions, without_descriptions

REPO = Path(__file__).resolve().parents[2]
CRDS = {kind.kind: REPO / "crds" / f"{kind.crd_name}.yaml" for kind in api.VERSIONED_KINDS}
# `kubectl get runners` / `kubectl get deploytokens` as they were under v1alpha1 alone: they must not change.
PRINTER_COLUMNS = {
    "Runner": [
        "Runner ID", "Type", "Replicas", "Ready Replicas", "Token Expires", "Renewal", "Ready", "Reason", "Age",
    ],
    "DeployToken": ["Token ID", "Username", "Expires", "Renewal", "Ready", "Reason", "Age"],
}  # fmt: skip


def _crd(kind: str) -> dict[str, Any]:
    return dict(yaml.safe_load(CRDS[kind].read_text()))


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_versions_served_and_stored(kind: str) -> None:
    versions = _crd(kind)["spec"]["versions"]
    assert [v["name"] for v in versions] == [api.VERSION, *api.DEPRECATED_VERSIONS]
    assert [v["name"] for v in versions if v["storage"]] == [api.VERSION]
    assert all(v["served"] for v in versions)
    assert not versions[0].get("deprecated")


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_deprecated_versions_name_their_replacement(kind: str) -> None:
    storage, *deprecated = _crd(kind)["spec"]["versions"]
    for version in deprecated:
        assert version["deprecated"] is True
        warning = version["deprecationWarning"]
        assert warning == f"glrt.dev/{version['name']} {kind} is deprecated; use glrt.dev/{api.VERSION} {kind}"
        # Without a conversion webhook the schemas must agree; descriptions alone are left out.
        assert version["schema"] == without_descriptions(storage["schema"])
        assert version["subresources"] == storage["subresources"]
        assert version["additionalPrinterColumns"] == storage["additionalPrinterColumns"]


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_printer_columns_unchanged(kind: str) -> None:
    for version in _crd(kind)["spec"]["versions"]:
        assert [c["name"] for c in version["additionalPrinterColumns"]] == PRINTER_COLUMNS[kind]


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_committed_crd_holds_the_generated_versions(kind: str) -> None:
    text = CRDS[kind].read_text()
    assert with_deprecated_versions(text) == text, f"{CRDS[kind].name} is stale: run make crds"


def test_without_descriptions_keeps_a_property_named_description() -> None:
    schema = {
        "type": "object",
        "description": "dropped",
        "properties": {"description": {"type": "string", "description": "dropped", "maxLength": 3}},
    }
    assert without_descriptions(schema) == {
        "type": "object",
        "properties": {"description": {"type": "string", "maxLength": 3}},
    }


def test_the_storage_version_must_be_the_one_hand_written() -> None:
    text = CRDS["DeployToken"].read_text().replace(f"- name: {api.VERSION}", "- name: v9", 1)
    with pytest.raises(ValueError, match="exactly one version"):
        with_deprecated_versions(text)
