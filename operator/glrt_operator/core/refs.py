"""Which object a call is about, as every use case names it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

# Where the use cases write their log lines: Kopf's per-object logger or a plain one.
Logger = logging.Logger | logging.LoggerAdapter[Any]


@dataclass(frozen=True)
class ObjectRef:
    """A namespaced object of this operator: its name, namespace and uid (the uid tells re-creations apart)."""

    namespace: str
    name: str
    uid: str

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        meta = body["metadata"]
        return cls(meta["namespace"], meta["name"], meta["uid"])
