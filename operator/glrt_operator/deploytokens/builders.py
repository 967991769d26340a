"""Pure builders for what the operator creates for a `DeployToken`: its name in GitLab and its Secret."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..core.api import DEPLOY_TOKEN
from ..core.objects import b64, labels_of, owner_reference
from ..core.times import iso
from .model import DOCKERCONFIGJSON, SecretSpec

LABEL_DEPLOY_TOKEN = "glrt.dev/deploytoken"
# On a copy in another namespace: the DeployToken's namespace, and its uid (which copy is whose).
LABEL_COPY_OF = "glrt.dev/deploytoken-namespace"
ANNOTATION_COPY_OF_UID = "glrt.dev/deploytoken-uid"
ANNOTATION_TOKEN_ID = "glrt.dev/deploy-token-id"
ANNOTATION_EXPIRES_AT = "glrt.dev/deploy-token-expires-at"
ANNOTATION_ISSUED_AT = "glrt.dev/deploy-token-issued-at"
NAME_PREFIX = "glrt-"
MAX_TOKEN_NAME = 255  # GitLab stores the name in a varchar(255)
UID_CHARS = 8


def token_name(namespace: str, name: str, uid: str) -> str:
    """The deploy token's name in GitLab, the marker of what this object created: ``glrt-<ns>-<name>-<uid8>``.

    The uid part tells apart objects re-created under the same name; the middle is shortened if needed, never the
    uid. It can never be ``gitlab-deploy-token``, the name GitLab hands to CI jobs on its own."""
    suffix = "-" + uid.replace("-", "")[:UID_CHARS]
    middle = f"{namespace}-{name}"[: MAX_TOKEN_NAME - len(NAME_PREFIX) - len(suffix)]
    return f"{NAME_PREFIX}{middle}{suffix}"


def secret_data(spec: SecretSpec, username: str, token: str) -> dict[str, str]:
    """The Secret's ``data`` (base64 values) in the format its type asks for."""
    if spec.type == DOCKERCONFIGJSON:
        assert spec.registry is not None  # the model requires it for this type
        auth = base64.b64encode(f"{username}:{token}".encode()).decode()
        config = {"auths": {spec.registry: {"username": username, "password": token, "auth": auth}}}
        return {".dockerconfigjson": b64(json.dumps(config, sort_keys=True))}
    return {"username": b64(username), "password": b64(token)}


def secret(
    spec: SecretSpec,
    *,
    owner_name: str,
    owner_uid: str,
    namespace: str,
    token_id: int,
    username: str,
    token: str,
    expires_at: datetime | None,
    issued_at: datetime | None = None,
) -> dict[str, Any]:
    """The whole Secret: owned by the `DeployToken` (garbage-collected with it), labelled, annotated with the
    token's id and expiry. The token itself is only in ``data``."""
    annotations = {ANNOTATION_TOKEN_ID: str(token_id)}
    if expires_at is not None:
        annotations[ANNOTATION_EXPIRES_AT] = iso(expires_at) or ""
    if issued_at is not None:
        annotations[ANNOTATION_ISSUED_AT] = iso(issued_at) or ""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": spec.type,
        "metadata": {
            "name": spec.name,
            "namespace": namespace,
            "labels": labels_of("deploy-token", owner_name, LABEL_DEPLOY_TOKEN),
            "annotations": annotations,
            "ownerReferences": [owner_reference(DEPLOY_TOKEN, owner_name, owner_uid)],
        },
        "data": secret_data(spec, username, token),
    }


def copy_of(own: Mapping[str, Any], namespace: str, owner_uid: str) -> dict[str, Any]:
    """The DeployToken's Secret `own` as a copy in another namespace, where no owner reference reaches: labelled
    with the DeployToken's namespace and annotated with its uid (whose copy it is)."""
    meta = own["metadata"]
    return {
        **own,
        "metadata": {
            "name": meta["name"],
            "namespace": namespace,
            "labels": {**meta["labels"], LABEL_COPY_OF: meta["namespace"]},
            "annotations": {**meta["annotations"], ANNOTATION_COPY_OF_UID: owner_uid},
        },
    }


def checksum(username: str, token: str) -> str:
    """What recognises the credential the operator wrote without keeping the token anywhere else (a SHA-256 of a
    random token of GitLab's, recorded in the status)."""
    return hashlib.sha256(f"{username}:{token}".encode()).hexdigest()


def secret_token_id(annotations: Mapping[str, str]) -> int | None:
    """The token id a Secret's annotations say it holds (None without the annotation)."""
    raw = annotations.get(ANNOTATION_TOKEN_ID)
    return int(raw) if isinstance(raw, str) and raw.isdigit() else None


def credentials(spec: SecretSpec, data: Mapping[str, str]) -> tuple[str, str] | None:
    """(username, token) back from a Secret's decoded ``data`` written in the format of ``spec`` (any registry
    entry: the registry may have changed since); None when it holds none."""
    if spec.type == DOCKERCONFIGJSON:
        try:
            auths = json.loads(data.get(".dockerconfigjson", "")).get("auths") or {}
        except (ValueError, AttributeError):
            return None
        entry = next(iter(auths.values()), None) if isinstance(auths, dict) else None
        if not isinstance(entry, dict) or not entry.get("username") or not entry.get("password"):
            return None
        return str(entry["username"]), str(entry["password"])
    username, token = data.get("username"), data.get("password")
    return (username, token) if username and token else None
