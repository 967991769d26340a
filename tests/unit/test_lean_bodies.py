"""Watch events reach Kopf without managedFields (`controller.lean_bodies`)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from kopf._core.reactor import processing, running

from glrt_operator.controller import lean_bodies


def _event() -> dict[str, Any]:
    return {
        "type": "MODIFIED",
        "object": {
            "metadata": {
                "name": "r1",
                "uid": "u1",
                "annotations": {"a": "b"},
                "managedFields": [{"manager": "kopf", "operation": "Update", "fieldsV1": {"f:status": {}}}],
            },
            "spec": {"replicas": 2},
            "status": {"runnerId": 7},
        },
    }


def test_the_managed_fields_go_and_nothing_else() -> None:
    event = _event()
    lean_bodies.strip_managed_fields(event)
    expected = _event()
    del expected["object"]["metadata"]["managedFields"]
    assert event == expected


@pytest.mark.parametrize(
    "event",
    [{"type": "ERROR", "object": {"kind": "Status", "code": 410}}, {"type": "ADDED", "object": None}, {}],
    ids=["a-status", "no-object", "empty"],
)
def test_an_event_without_metadata_passes_unchanged(event: dict[str, Any]) -> None:
    before = repr(event)
    lean_bodies.strip_managed_fields(event)
    assert repr(event) == before


def test_the_wrapped_processor_gets_the_lean_event_and_every_other_argument() -> None:
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    async def process(*args: Any, **kwargs: Any) -> str:
        seen.append((args, kwargs))
        return "rv-9"

    result = asyncio.run(lean_bodies.lean(process)("positional", raw_event=_event(), stream_pressure=None))
    assert result == "rv-9"
    [(args, kwargs)] = seen
    assert args == ("positional",) and kwargs["stream_pressure"] is None
    assert "managedFields" not in kwargs["raw_event"]["object"]["metadata"]
    assert kwargs["raw_event"]["object"]["spec"] == {"replicas": 2}


@pytest.fixture
def kopf_processor() -> Iterator[None]:
    original = processing.process_resource_event
    yield
    processing.process_resource_event = original  # type: ignore[method-assign]


@pytest.mark.usefixtures("kopf_processor")
def test_install_wraps_kopfs_processor_once() -> None:
    original = processing.process_resource_event
    assert lean_bodies.install() is True
    wrapped = processing.process_resource_event
    assert wrapped is not original and getattr(wrapped, "__wrapped__", None) is original
    assert lean_bodies.install() is True
    assert processing.process_resource_event is wrapped  # not wrapped twice


def test_kopfs_runner_looks_the_processor_up_when_it_starts() -> None:
    """The upgrade guard: the wrapper takes effect only because Kopf's runner reads `processing.process_resource_
    event` when it spawns its tasks (after `install`), not a name bound at import."""
    assert "processing.process_resource_event" in inspect.getsource(running.spawn_tasks)
    params = inspect.signature(processing.process_resource_event).parameters
    assert "raw_event" in params
