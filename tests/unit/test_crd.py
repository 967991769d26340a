"""The CRD schema and the spec model say the same thing; the Helm chart ships the same CRD bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from glrt_operator.runners import model

REPO = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((REPO / "crds" / "runners.glrt.dev.yaml").read_text())
VERSION = CRD["spec"]["versions"][0]
SPEC = VERSION["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]


def test_identity_of_the_resource() -> None:
    assert CRD["metadata"]["name"] == "runners.glrt.dev"
    assert CRD["spec"]["group"] == "glrt.dev" and CRD["spec"]["scope"] == "Namespaced"
    assert CRD["spec"]["names"]["kind"] == "Runner" and CRD["spec"]["names"]["plural"] == "runners"
    assert VERSION["name"] == "v1alpha1" and VERSION["subresources"] == {"status": {}}


def test_enums_match_the_model() -> None:
    assert tuple(SPEC["runnerType"]["enum"]) == model.RUNNER_TYPES
    assert tuple(SPEC["accessLevel"]["enum"]) == model.ACCESS_LEVELS
    assert tuple(SPEC["config"]["properties"]["logLevel"]["enum"]) == model.LOG_LEVELS


def test_limits_match_the_model() -> None:
    assert SPEC["description"]["maxLength"] == model.MAX_DESCRIPTION
    assert SPEC["maintenanceNote"]["maxLength"] == model.MAX_MAINTENANCE_NOTE
    assert SPEC["tags"]["maxItems"] == model.MAX_TAGS
    assert SPEC["maximumTimeout"]["minimum"] == model.MIN_MAXIMUM_TIMEOUT
    assert SPEC["replicas"]["maximum"] == model.MAX_REPLICAS


def _defaults(props: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, schema in props.items():
        if "default" in schema:
            found[prefix + key] = schema["default"]
        found.update(_defaults(schema.get("properties", {}), f"{prefix}{key}."))
    return found


def test_schema_defaults_are_the_model_defaults() -> None:
    """A spec without the defaulted fields parses to the same model as one where the apiserver filled them in
    (the apiserver defaults a nested field only when its parent object is present, as here)."""
    minimal = {
        "gitlab": {"url": "https://gitlab.example.com", "credentialsSecretRef": {"name": "api"}},
        "runnerType": "instance_type",
        "config": {},
    }
    filled: dict[str, Any] = yaml.safe_load(yaml.safe_dump(minimal))
    for path, value in _defaults(SPEC).items():
        node: dict[str, Any] | None = filled
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.get(p) if node is not None else None
        if node is not None:
            node[leaf] = value
    assert "config.concurrent" in _defaults(SPEC) and "replicas" in _defaults(SPEC)
    assert model.RunnerSpec.parse(minimal) == model.RunnerSpec.parse(filled)


def test_printer_columns() -> None:
    columns = [c["name"] for c in VERSION["additionalPrinterColumns"]]
    assert columns[:3] == ["Runner ID", "Type", "Replicas"]
    assert {"Token Expires", "Ready", "Age"} <= set(columns)


def test_status_declares_what_the_operator_writes() -> None:
    status = VERSION["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    written = (
        "observedGeneration", "runnerId", "tokenSecretName", "configSecretName", "tokenExpiresAt", "readyReplicas",
        "creationStartedAt", "rotationStartedAt", "rotationRequestedAt", "tokenRotatedAt", "replicas", "conditions",
    )  # fmt: skip
    for field in written:  # an undeclared field would be pruned by the apiserver, silently
        assert field in status, field
    assert {"ordinal", "pod", "systemId", "managerStatus", "contactedAt", "version"} <= set(
        status["replicas"]["items"]["properties"]
    )
