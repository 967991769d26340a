"""Writes the deprecated versions of a CRD from its storage version, in place between two marker comments.

The CRD files hold one hand-written version, `core.api.VERSION` (served and stored). Every version of
`core.api.DEPRECATED_VERSIONS` is generated from it: the same schema (so the API server converts by rewriting
apiVersion alone, no webhook), the same printer columns, `deprecated: true` with a warning naming the replacement,
and no descriptions: two full copies of the Runner schema would not fit the 256 KiB annotation a client-side
`kubectl apply` writes, and `kubectl explain` reads the preferred (storage) version anyway. `scripts/gen-runner-crd.py`
(`make crds`) runs it; a unit test fails when a committed CRD differs from what it would write.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from .api import DEPRECATED_VERSIONS, VERSION, deprecation_warning

BEGIN = "# BEGIN generated deprecated versions"
END = "# END generated deprecated versions"
INDENT = 4  # spec.versions[]


def without_descriptions(schema: Any) -> Any:
    """An OpenAPI schema with every `description` keyword dropped (not properties named `description`)."""
    if isinstance(schema, list):
        return [without_descriptions(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "description" and isinstance(value, str):
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: without_descriptions(sub) for name, sub in value.items()}
        else:
            out[key] = without_descriptions(value)
    return out


def deprecated_version(storage: dict[str, Any], name: str, kind: str) -> dict[str, Any]:
    """The served, deprecated copy `name` of the storage version entry."""
    entry: dict[str, Any] = {
        "name": name,
        "served": True,
        "storage": False,
        "deprecated": True,
        "deprecationWarning": deprecation_warning(name, kind),
    }
    for key, value in storage.items():
        if key not in entry:
            entry[key] = copy.deepcopy(value)
    entry["schema"] = without_descriptions(entry["schema"])
    return entry


def _strip_block(lines: list[str]) -> list[str]:
    starts = [i for i, line in enumerate(lines) if line.strip().startswith(BEGIN)]
    ends = [i for i, line in enumerate(lines) if line.strip().startswith(END)]
    if not starts and not ends:
        return lines
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ValueError(f"the CRD must hold at most one {BEGIN!r} ... {END!r} block")
    return lines[: starts[0]] + lines[ends[0] + 1 :]


def with_deprecated_versions(crd_text: str) -> str:
    """The CRD text with the generated block (at the end of the file: spec.versions is its last field) replaced by
    the deprecated versions derived from the storage version."""
    lines = _strip_block(crd_text.splitlines(keepends=True))
    hand_written = "".join(lines)
    crd = yaml.safe_load(hand_written)
    versions = crd["spec"]["versions"]
    if [v["name"] for v in versions] != [VERSION] or not versions[0].get("storage"):
        raise ValueError(f"the CRD must hand-write exactly one version, {VERSION}, served and stored")
    kind = crd["spec"]["names"]["kind"]
    entries = [deprecated_version(versions[0], name, kind) for name in DEPRECATED_VERSIONS]
    body = yaml.safe_dump(entries, sort_keys=False, default_flow_style=None, width=120, allow_unicode=True)
    pad = " " * INDENT
    block = [
        f"{pad}{BEGIN} by scripts/gen-runner-crd.py from {VERSION} above:",
        f"{pad}# the same schema without descriptions, deprecated; do not edit by hand, run `make crds`.",
        *(f"{pad}{line}" if line else line for line in body.splitlines()),
        f"{pad}{END}",
    ]
    if not hand_written.endswith("\n"):
        hand_written += "\n"
    return hand_written + "\n".join(block) + "\n"
