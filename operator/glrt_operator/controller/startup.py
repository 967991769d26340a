"""The operator's start and stop: every Kopf setting in one place (a test asserts them), and the adapters,
created once and kept in Kopf's memo for every handler."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from ..adapters.gitlab import GitLabPool
from ..adapters.kube import Kube, load_api_client
from ..core.api import API_VERSION, FINALIZER, GROUP
from .runtime import CONFIG


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Startup: Kopf's settings, then the adapters, created once and kept in memo."""
    apply_settings(settings)
    kube = Kube(load_api_client())
    if not kube.api_served():
        # With scanning off, Kopf would otherwise wait silently forever; exiting lets the pod restart until it is.
        raise kopf.PermanentError(f"{API_VERSION} is not served: install the CRDs (kubectl apply -f crds/)")
    memo["kube"] = kube
    memo["gitlab"] = GitLabPool(per_minute=CONFIG.gitlab_requests_per_minute, max_in_flight=CONFIG.gitlab_concurrency)
    memo["resync_pool"] = ThreadPoolExecutor(CONFIG.resync_workers, thread_name_prefix="resync")


def apply_settings(settings: kopf.OperatorSettings) -> None:
    """All Kopf settings in one place (a test asserts them)."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    # Scanning would need cluster-wide list rights on CRDs and namespaces; the CRDs are installed with the chart.
    settings.scanning.disabled = True
    settings.watching.server_timeout = int(CONFIG.watch_server_timeout)
    settings.watching.client_timeout = int(CONFIG.watch_server_timeout) + 30
    settings.watching.connect_timeout = 10
    settings.networking.error_backoffs = [1, 2, 5, 10, 30, 60]
    # Event handlers only: resyncs run on memo["resync_pool"], so they never queue ahead of a new object.
    settings.execution.max_workers = CONFIG.workers
    # A resync in flight when its object is deleted finishes within seconds; don't hold the finalizer for 60.
    settings.background.cancellation_polling = 1


@kopf.on.cleanup()
def close(memo: kopf.Memo, **_: Any) -> None:
    memo["resync_pool"].shutdown(wait=False, cancel_futures=True)
    memo["gitlab"].close()
