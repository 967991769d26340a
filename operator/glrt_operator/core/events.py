"""Kubernetes Events as the use cases see them: a callable, so they never depend on Kopf's posting machinery."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

EventType = Literal["Normal", "Warning"]
# (type, reason, message): reason is CamelCase, the message is for a person and never holds a secret.
EventSink = Callable[[EventType, str, str], None]
