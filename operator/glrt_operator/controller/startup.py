"""The operator's start and stop: every Kopf setting in one place (a test asserts them), and the adapters,
created once and kept in Kopf's memo for every handler."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
import kubernetes
from kubernetes.client.exceptions import ApiException

from ..adapters.gitlab import GitLabPool
from ..adapters.kube import Kube
from ..adapters.kube_cache import watch_count
from ..adapters.kube_client import load_api_client
from ..adapters.kube_storage import migrate_storage
from ..core.api import API_VERSION, FINALIZER, GROUP, VERSION, VERSIONED_KINDS
from ..core.namespaces import EVERY_NAMESPACE
from .runtime import CONFIG

LOG = logging.getLogger("glrt_operator.startup")
CACHE_SYNC_SECONDS = 30.0
KOPF_CONSISTENCY_SECONDS = 60.0


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Startup: Kopf's settings, then the adapters, created once and kept in memo."""
    apply_settings(settings)
    scope = memo.get("scope", EVERY_NAMESPACE)
    # A connection for each thread that calls the API server: Kopf's workers, the resync pool, the caches' watches.
    api = load_api_client(CONFIG.workers + CONFIG.resync_workers + watch_count(scope.watched))
    kube = Kube(api)
    if not kube.api_served():
        # With scanning off, Kopf would otherwise wait silently forever; exiting lets the pod restart until it is.
        raise kopf.PermanentError(f"{API_VERSION} is not served: install the CRDs (kubectl apply -f crds/)")
    if scope == EVERY_NAMESPACE:
        migrate_stored_objects(api)
    if CONFIG.watch_caches:
        kube.start_caches(
            scope.watched,
            server_timeout=int(CONFIG.watch_server_timeout),
            own_secret_ttl=CONFIG.own_secret_recheck,
            secret_ttl=CONFIG.secret_read_ttl,
        )
        # Resumes at start are resyncs: let them find the caches filled (they read the API server until then).
        if not kube.wait_caches(CACHE_SYNC_SECONDS):
            LOG.warning(
                "watch caches not filled after %.0f s: resyncs read the API server until then", CACHE_SYNC_SECONDS
            )
    memo["kube"] = kube
    memo["gitlab"] = GitLabPool(per_minute=CONFIG.gitlab_requests_per_minute, max_in_flight=CONFIG.gitlab_concurrency)
    memo["resync_pool"] = ThreadPoolExecutor(CONFIG.resync_workers, thread_name_prefix="resync")


def migrate_stored_objects(api: kubernetes.client.ApiClient) -> None:
    """Store every object as VERSION and drop older versions from the CRDs' storedVersions (a no-op once done).
    Only in the cluster-wide mode: dropping a stored version is safe only after seeing every namespace. A failure
    is logged and never stops the operator: the old versions are still served, so nothing breaks meanwhile."""
    for kind in VERSIONED_KINDS:
        try:
            result = migrate_storage(api, group=GROUP, plural=kind.plural, version=VERSION)
        except ApiException as exc:
            LOG.warning(
                "cannot migrate %s to %s (%s %s): see docs/operations/api-versions.md",
                kind.crd_name,
                VERSION,
                exc.status,
                exc.reason,
            )
            continue
        except Exception as exc:  # the API server unreachable, an answer the client cannot read: never fatal
            LOG.warning("cannot migrate %s to %s (%s): retried at the next start", kind.crd_name, VERSION, exc)
            continue
        if result.rewritten or result.stored_before != (VERSION,):
            LOG.info(
                "%s: %d objects rewritten, storedVersions %s -> %s",
                kind.crd_name,
                result.rewritten,
                list(result.stored_before),
                [VERSION] if result.done else list(result.stored_before),
            )


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
    # After its own patch Kopf waits this long for the watch to bring the patched version, then handles the last
    # version it has (5 s by default). A busy API server delivers later than that, and the edit just handled is
    # handled again from the stale version. On a healthy one the wait ends within milliseconds; only a patch that
    # changed nothing (no event follows) holds the object's next edit for the whole wait.
    settings.persistence.consistency_timeout = KOPF_CONSISTENCY_SECONDS


@kopf.on.cleanup()
def close(memo: kopf.Memo, **_: Any) -> None:
    memo["resync_pool"].shutdown(wait=False, cancel_futures=True)
    memo["kube"].stop_caches()
    memo["gitlab"].close()
