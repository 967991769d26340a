"""Writing a child only when it differs from what is there: the desired manifest carries a digest of itself in an
annotation, and a child whose stored annotation matches (and, for a Secret, whose data matches) is left alone. A
server-side apply that changes nothing is still a write request to the API server; at rest a fleet makes none.

The digest of a Secret leaves its `data` out (it would be a digest of the token): its data is compared as read."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from .ports import ChildObject, SecretObject

DESIRED_HASH = "glrt.dev/desired-hash"


def stamped(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest with the digest of its desired state in `metadata.annotations` (pure)."""
    body = {k: v for k, v in manifest.items() if k != "data"}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:24]
    result = copy.deepcopy(dict(manifest))
    result["metadata"].setdefault("annotations", {})[DESIRED_HASH] = digest
    return result


def digest_of(manifest: Mapping[str, Any]) -> str | None:
    digest: str | None = (manifest.get("metadata", {}).get("annotations") or {}).get(DESIRED_HASH)
    return digest


def child_current(desired: Mapping[str, Any], found: ChildObject | None) -> bool:
    """Is the stamped `desired` what `found` (read just now) was last applied from?"""
    return found is not None and found.annotations.get(DESIRED_HASH) == digest_of(desired)


def secret_current(desired: Mapping[str, Any], found: SecretObject | None) -> bool:
    """Is the stamped Secret `desired` what `found` holds: same digest of its metadata and type, same data?"""
    if found is None or found.annotations.get(DESIRED_HASH) != digest_of(desired):
        return False
    data = {k: base64.b64decode(v).decode() for k, v in (desired.get("data") or {}).items()}
    return dict(found.data) == data
