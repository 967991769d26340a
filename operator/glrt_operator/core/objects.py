"""What every object the operator creates carries: labels, owner references, valid names, Secret data encoding
(pure)."""

from __future__ import annotations

import base64
import re
from typing import Any

from .api import API_VERSION, Kind

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "glrt-operator"

MAX_SUBDOMAIN_NAME = 253
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")  # RFC 1123 subdomain: Secret and namespace names
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # RFC 1123 label: StatefulSet names


def is_subdomain_name(name: str) -> bool:
    return 0 < len(name) <= MAX_SUBDOMAIN_NAME and bool(_SUBDOMAIN.match(name))


def is_dns_label(name: str) -> bool:
    return 0 < len(name) <= 63 and bool(_LABEL.match(name))


def labels_of(app: str, instance: str, owner_label: str) -> dict[str, str]:
    """The labels of a child: the app it is (`gitlab-runner`, `deploy-token`), the owning object's name as the
    instance and under the owner kind's own label (`glrt.dev/runner: builds`)."""
    return {LABEL_NAME: app, LABEL_INSTANCE: instance, LABEL_MANAGED_BY: MANAGED_BY, owner_label: instance}


def owner_reference(kind: Kind, name: str, uid: str) -> dict[str, Any]:
    """A controller owner reference: the garbage collector deletes the child with its owner."""
    return {
        "apiVersion": API_VERSION,
        "kind": kind.kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def b64(value: str) -> str:
    """A Secret `data` value."""
    return base64.b64encode(value.encode()).decode("ascii")


def encoded(data: dict[str, str]) -> dict[str, str]:
    """Decoded Secret data (as the Kubernetes adapter reads it) in the form the builders write, to compare."""
    return {k: b64(v) for k, v in data.items()}
