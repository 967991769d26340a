"""The in-memory stand-in keeps the Kubernetes adapter's shape, so the reconcile tier tests what production runs."""

from __future__ import annotations

import inspect

from glrt_operator.adapters.kube import Kube

from .conftest import InMemoryKube

# Called at startup and cleanup by the handlers, not by a use case.
PRODUCTION_ONLY = {"api_served", "start_caches", "wait_caches", "stop_caches"}


def test_in_memory_kube_has_every_method_of_the_adapter_with_its_parameters() -> None:
    for name, method in inspect.getmembers(Kube, inspect.isfunction):
        if name.startswith("_") or name in PRODUCTION_ONLY:
            continue
        stand_in = getattr(InMemoryKube, name, None)
        assert stand_in is not None, f"InMemoryKube lacks {name}"
        assert list(inspect.signature(stand_in).parameters) == list(inspect.signature(method).parameters), name
