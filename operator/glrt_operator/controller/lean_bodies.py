"""Lean bodies: Kopf keeps each object's latest body in memory for as long as the object lives (its timers and
daemons read it). In memory, most of a body is `metadata.managedFields`: a Runner's take 15 of its 25 KB as Python
objects, about 75 MB at 5,000 Runners. Nothing in the operator reads them (it writes with merge patches and
server-side apply, which the API server checks against its own copy), so they are dropped from each watch event
before Kopf stores it, as Kubernetes' own controllers drop them from their informer caches.

Kopf has no public hook for this: the wrapper replaces its event processor, a private function. A unit test checks
that the wrapper is what Kopf's runner will call, so a Kopf upgrade that moves it fails the suite, not production;
an operator started against such a Kopf logs a warning and runs with full bodies.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

LOG = logging.getLogger("glrt_operator.startup")
_MARK = "_glrt_lean_bodies"

Processor = Callable[..., Awaitable[Any]]


def strip_managed_fields(raw_event: MutableMapping[str, Any]) -> None:
    """Drop `metadata.managedFields` from a watch event's object, in place."""
    body = raw_event.get("object")
    metadata = body.get("metadata") if isinstance(body, MutableMapping) else None
    if isinstance(metadata, MutableMapping):
        metadata.pop("managedFields", None)


def lean(process: Processor) -> Processor:
    """`process` (Kopf's processor of one watch event), fed events without managedFields."""

    @functools.wraps(process)
    async def process_lean(*args: Any, raw_event: MutableMapping[str, Any], **kwargs: Any) -> Any:
        strip_managed_fields(raw_event)
        return await process(*args, raw_event=raw_event, **kwargs)

    setattr(process_lean, _MARK, True)
    return process_lean


def install() -> bool:
    """Before `kopf.run`: Kopf's runner binds its processor when it starts. False (with a warning) when this Kopf
    has no such processor."""
    try:
        from kopf._core.reactor import processing
    except ImportError:
        processing = None  # type: ignore[assignment]
    process = getattr(processing, "process_resource_event", None)
    if processing is None or process is None:
        LOG.warning("this Kopf has no process_resource_event: object bodies are kept with their managedFields")
        return False
    if not getattr(process, _MARK, False):
        setattr(processing, "process_resource_event", lean(process))  # noqa: B010  (a private attribute, typed)
    return True
