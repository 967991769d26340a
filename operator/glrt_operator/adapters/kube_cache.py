"""Watch caches of the operator's own children, so that a resync at rest reads nothing from the API server.

One `Informer` per kind and namespace (or one cluster-wide): a list, then a watch from its resourceVersion, both
selected by the `glrt.dev/runner` label every child of a Runner carries, re-listed when the watch cannot resume.
Kept small: only what the use cases read (`PodInfo`, `ChildObject`) and the labels. Secrets are never listed or
watched (RBAC grants them by name only); `SecretMemory` keeps what was last read or written instead.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self, TypeVar

import kubernetes

from ..core.ports import ChildObject, PodInfo, SecretObject

LOG = logging.getLogger("glrt_operator.kube_cache")
# Every child of a Runner carries it (`runners.builders.labels`): the watches select on its presence.
SELECTOR = "glrt.dev/runner"
Key = tuple[str, str]  # namespace, name
T = TypeVar("T")
LIST_PAGE = 500


@dataclass(frozen=True)
class Entry:
    labels: Mapping[str, str]
    value: Any  # PodInfo or ChildObject


class Informer:
    """A list+watch of one kind's labelled objects in one namespace (None: every namespace), kept by (namespace,
    name). `get` and `select` answer only once `synced`; until then (and while re-listing) the caller reads the API
    server itself."""

    def __init__(
        self,
        kind: str,
        lister: Callable[..., Any],
        convert: Callable[[Mapping[str, Any]], Any],
        namespace: str | None,
        server_timeout: int,
    ) -> None:
        self.kind, self.namespace = kind, namespace
        self._lister, self._convert, self._timeout = lister, convert, server_timeout
        self._items: dict[Key, Entry] = {}
        self._lock = threading.Lock()
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"watch-{kind}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def get(self, namespace: str, name: str) -> tuple[bool, Any]:
        """(known, value): known False when the cache cannot answer; value None when the object does not exist."""
        if not self.synced.is_set():
            return False, None
        with self._lock:
            entry = self._items.get((namespace, name))
        return True, None if entry is None else entry.value

    def select(self, namespace: str, labels: Mapping[str, str]) -> tuple[bool, list[Any]]:
        """(known, values) of the objects in `namespace` carrying every label of `labels`."""
        if not self.synced.is_set():
            return False, []
        with self._lock:
            found = [
                e.value
                for (ns, _), e in self._items.items()
                if ns == namespace and all(e.labels.get(k) == v for k, v in labels.items())
            ]
        return True, found

    def _args(self) -> tuple[str, ...]:
        return (self.namespace,) if self.namespace is not None else ()

    def _entry(self, obj: Mapping[str, Any]) -> tuple[Key, Entry]:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        return key, Entry(dict(meta.get("labels") or {}), self._convert(obj))

    def _list(self) -> str:
        """Fill the cache, a page at a time, as plain JSON (no client models: a fleet's pods stay small); returns
        the list's resourceVersion."""
        items: dict[Key, Entry] = {}
        token: str | None = None
        while True:
            options: dict[str, Any] = {"limit": LIST_PAGE}
            if token:
                options["_continue"] = token
            response = self._lister(*self._args(), label_selector=SELECTOR, _preload_content=False, **options)
            page = json.loads(response.data)
            items.update(self._entry(o) for o in page.get("items") or ())
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                break
        with self._lock:
            self._items = items
        return str(meta.get("resourceVersion") or "")

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                version = self._list()
                self.synced.set()
                failures = 0
                self._watch(version)
            except Exception as exc:  # re-list after any failure (a 410 Gone, a dropped connection, a 403)
                self.synced.clear()
                failures += 1
                LOG.info("watch of %s ended (%s); re-listing", self.kind, type(exc).__name__)
                self._stop.wait(min(30.0, 0.5 * 2**failures))

    def _watch(self, version: str) -> None:
        """Watch from `version` until the stop; each server timeout resumes from the last version seen."""
        while not self._stop.is_set():
            stream = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
            for event in stream.stream(  # type: ignore[no-untyped-call]
                self._lister,
                *self._args(),
                label_selector=SELECTOR,
                resource_version=version,
                timeout_seconds=self._timeout,
                allow_watch_bookmarks=True,
                deserialize=False,  # plain JSON, converted at once to what the cache keeps
                _request_timeout=self._timeout + 30,
            ):
                obj, kind = event.get("object") or {}, event.get("type")
                if kind == "ERROR":  # 410 Gone: the version is too old to resume from
                    raise RuntimeError(f"watch error {obj.get('code')}")
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind == "BOOKMARK":
                    continue
                key, entry = self._entry(obj)
                with self._lock:
                    if kind == "DELETED":
                        self._items.pop(key, None)
                    else:
                        self._items[key] = entry
                if self._stop.is_set():
                    stream.stop()  # type: ignore[no-untyped-call]


def _owners(meta: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(ref.get("uid")) for ref in meta.get("ownerReferences") or ())


def child_of(kind: str) -> Callable[[Mapping[str, Any]], ChildObject]:
    def convert(obj: Mapping[str, Any]) -> ChildObject:
        meta = obj.get("metadata") or {}
        ready = int((obj.get("status") or {}).get("readyReplicas") or 0) if kind == "StatefulSet" else 0
        return ChildObject(annotations=dict(meta.get("annotations") or {}), owners=_owners(meta), ready_replicas=ready)

    return convert


def pod_of(obj: Mapping[str, Any]) -> PodInfo:
    meta = obj.get("metadata") or {}
    return PodInfo(
        name=str(meta.get("name")),
        terminating=meta.get("deletionTimestamp") is not None,
        annotations=dict(meta.get("annotations") or {}),
    )


WATCHED_KINDS = ("Pod", "StatefulSet", "ServiceAccount", "PodDisruptionBudget", "RoleBinding")


def _scopes(namespaces: Iterable[str] | None) -> list[str | None]:
    """What each kind is watched in: every namespace served, or None (cluster-wide)."""
    return [*sorted(namespaces)] if namespaces else [None]


def watch_count(namespaces: Iterable[str] | None) -> int:
    """How many watches the caches hold open: one per child kind and scope (`informers`)."""
    return len(WATCHED_KINDS) * len(_scopes(namespaces))


def informers(
    api: kubernetes.client.ApiClient, namespaces: Iterable[str] | None, timeout: int
) -> dict[str, list[Informer]]:
    """The informers of every child kind, per namespace served (None: one each, cluster-wide)."""
    core = kubernetes.client.CoreV1Api(api)
    apps = kubernetes.client.AppsV1Api(api)
    policy = kubernetes.client.PolicyV1Api(api)
    rbac = kubernetes.client.RbacAuthorizationV1Api(api)
    listers: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
        "Pod": (core.list_namespaced_pod, core.list_pod_for_all_namespaces),
        "StatefulSet": (apps.list_namespaced_stateful_set, apps.list_stateful_set_for_all_namespaces),
        "ServiceAccount": (core.list_namespaced_service_account, core.list_service_account_for_all_namespaces),
        "PodDisruptionBudget": (
            policy.list_namespaced_pod_disruption_budget,
            policy.list_pod_disruption_budget_for_all_namespaces,
        ),
        "RoleBinding": (rbac.list_namespaced_role_binding, rbac.list_role_binding_for_all_namespaces),
    }
    scopes = _scopes(namespaces)
    found: dict[str, list[Informer]] = {}
    for kind in WATCHED_KINDS:
        namespaced, every = listers[kind]
        convert = pod_of if kind == "Pod" else child_of(kind)
        found[kind] = [Informer(kind, namespaced if ns else every, convert, ns, timeout) for ns in scopes]
    return found


class SecretMemory:
    """The Secrets last read or written, shared by every view of the adapter. A resync takes the operator's own
    (with owner references: the token and config Secrets) for `own_ttl` seconds, any other (an access token, a CA,
    a credential) for `other_ttl`: a Secret edited behind the operator's back is seen within that time, an event
    (a create or an edit) always reads the API server."""

    def __init__(self, own_ttl: float, other_ttl: float) -> None:
        self.own_ttl, self.other_ttl = own_ttl, other_ttl
        self._known: dict[Key, tuple[SecretObject | None, float]] = {}
        self._lock = threading.Lock()

    def remember(self, namespace: str, name: str, secret: SecretObject | None) -> None:
        with self._lock:
            self._known[(namespace, name)] = (secret, time.monotonic())

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._known.pop((namespace, name), None)

    def recall(self, namespace: str, name: str) -> tuple[bool, SecretObject | None]:
        with self._lock:
            known = self._known.get((namespace, name))
        if known is None:
            return False, None
        secret, at = known
        ttl = self.own_ttl if secret is not None and secret.owners else self.other_ttl
        return time.monotonic() - at < ttl, secret


def secret_object(secret: Any, name: str) -> SecretObject:
    meta = secret.metadata
    return SecretObject(
        name=name,
        annotations=dict((meta and meta.annotations) or {}),
        data={k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()},
        owners=tuple(ref.uid for ref in (meta.owner_references or [])) if meta else (),
        type=secret.type,
        resource_version=str((meta and meta.resource_version) or ""),
    )


def selector_labels(selector: str) -> dict[str, str] | None:
    """`a=b,c=d` as labels; None for any other selector (the cache answers equality selectors only)."""
    labels: dict[str, str] = {}
    for term in selector.split(","):
        key, sep, value = term.partition("=")
        if not sep or value.startswith("=") or key.endswith("!"):
            return None
        labels[key.strip()] = value.strip()
    return labels


class CachedReads:
    """What the Kubernetes adapter (`adapters.kube.Kube`) needs of the caches: starting them, and the resync view
    (`for_resync`) that answers from them."""

    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        self._api = api
        self._informers: dict[str, list[Informer]] = {}
        self._memory: SecretMemory | None = None
        self._cached = False  # Secrets from memory, the object's status from its body
        self._cached_children = False  # children from the watches
        self._body: Mapping[str, Any] | None = None
        # What this view has read or written so far, by (kind, namespace, name): a view serves one handler call,
        # whose steps each look at the same children (a check before GitLab is touched, then the apply).
        self._reads: dict[tuple[str, str, str], Any] | None = None

    def start_caches(
        self, namespaces: Collection[str] | None, *, server_timeout: int, own_secret_ttl: float, secret_ttl: float
    ) -> None:
        """Start the watches (`namespaces` None: cluster-wide) and the Secret memory."""
        self._memory = SecretMemory(own_secret_ttl, secret_ttl)
        self._informers = informers(self._api, namespaces, server_timeout)
        for each in self._informers.values():
            for informer in each:
                informer.start()

    def wait_caches(self, seconds: float) -> bool:
        """Wait until every watch has listed (False after `seconds`)."""
        deadline = time.monotonic() + seconds
        every = [i for each in self._informers.values() for i in each]
        return all(i.synced.wait(max(0.0, deadline - time.monotonic())) for i in every)

    def stop_caches(self) -> None:
        for each in self._informers.values():
            for informer in each:
                informer.stop()

    def for_resync(self, body: Mapping[str, Any]) -> Self:
        """The view of one resync of the object `body` (Kopf's live view of it)."""
        view = self.for_event(cached_children=True)
        view._cached, view._body = bool(self._informers), body
        return view

    def for_event(self, *, cached_children: bool = False) -> Self:
        """The view of one event handler call: it reads the API server, each object once (until it writes it).
        `cached_children` (an edit of an object whose children exist): the children from the watch caches, as a
        resync reads them; Secrets and the status still from the API server."""
        view = copy.copy(self)
        view._reads = {}
        view._cached_children = cached_children and bool(self._informers)
        return view

    def _recall(self, kind: str, namespace: str, name: str) -> tuple[bool, Any]:
        """(known, value) of what this view last read or wrote of the object."""
        if self._reads is None or (kind, namespace, name) not in self._reads:
            return False, None
        return True, self._reads[(kind, namespace, name)]

    def _note(self, kind: str, namespace: str, name: str, value: T) -> T:
        if self._reads is not None:
            self._reads[(kind, namespace, name)] = value
        return value

    def _forget(self, kind: str, namespace: str, name: str) -> None:
        """After a write whose result this view does not see: the next read goes to the API server."""
        if self._reads is not None:
            self._reads.pop((kind, namespace, name), None)

    def _informer(self, kind: str, namespace: str) -> Informer | None:
        if not self._cached_children:
            return None
        return next((i for i in self._informers.get(kind, ()) if i.namespace in (None, namespace)), None)

    def _cached_child(self, kind: str, namespace: str, name: str) -> tuple[bool, Any]:
        informer = self._informer(kind, namespace)
        return (False, None) if informer is None else informer.get(namespace, name)
