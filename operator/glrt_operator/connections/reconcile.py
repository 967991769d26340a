"""A connection's use case: learn what the GitLab answers for (version, edition, features) and what its access token
is (name, scopes, expiry), and keep the token alive by GitLab's self-rotation `renewBefore` its expiry.

The rotation (https://docs.gitlab.com/api/personal_access_tokens/#rotate-a-personal-access-token): GitLab revokes
the calling token at once, and a revoked token presented again on a rotate path revokes its whole family. So:
- a fence (`status.rotationStartedAt`, `rotationFromTokenId`) is recorded before the call;
- the answer's token is written into the Secret before anything else;
- a rotation whose answer was lost is never retried with the old token: the fence is settled by
  `GET /personal_access_tokens/self` (no rotate path, no reuse detection): the old token still active means the
  rotation never happened; the Secret holding a newer token means it was stored; the old token revoked while the
  Secret still holds it means the successor was lost. Then, with `spec.tokenRotation.recoverySecretRef` (another
  api token of the same user, or an administrator's), the lost successor is found by listing the user's active
  tokens of the same name and rotated by id with that token
  (https://docs.gitlab.com/api/personal_access_tokens/#rotate-a-personal-access-token): the revoked token is never
  presented, and the answer is stored first, as for any rotation. Without one only a person can repair it
  (TokenRotationLost, whose message says how).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import metrics
from ..core import connection
from ..core.api import Kind
from ..core.conditions import ConditionStatus, set_condition
from ..core.connection import ConnectionPolicy, GitLabSpec
from ..core.errors import ReconcileError, failures_explained
from ..core.events import EventSink
from ..core.gitlab import AccessTokenInfo, GitLabError
from ..core.ports import GitLabConnector, GitLabPort, KubePort
from ..core.reasons import ConditionType, EventReason, Reason
from ..core.refs import Logger
from ..core.spec import SecretKeyRef, SpecError
from ..core.times import iso, now_iso
from . import model
from .model import ConnectionSpec

MIN_RECHECK = timedelta(minutes=1)
NEEDS = "scope api, or create_runner, manage_runner and read_api; self_rotate or api to renew itself"


@dataclass(frozen=True)
class ConnectionRef:
    kind: Kind
    namespace: str | None  # None: a ClusterGitLabConnection
    name: str

    def __str__(self) -> str:
        return f"{self.kind.kind} {self.name!r}"


@dataclass(frozen=True)
class ConnectionOutcome:
    status: dict[str, Any]
    renewable: str | None  # why the token cannot renew itself, None when it can
    next_check: datetime | None
    ref: ConnectionRef
    expires_at: datetime | None

    def ready_status(self, conditions: Any, generation: int | None) -> dict[str, Any]:
        renewable: ConditionStatus = "False" if self.renewable else "True"
        reason = Reason.RECONCILED
        if self.renewable:
            reason = Reason.ROTATION_DISABLED if self.renewable.startswith("spec.") else Reason.ROTATION_IMPOSSIBLE
        conditions = set_condition(
            conditions, ConditionType.TOKEN_RENEWABLE, renewable, reason, self.renewable or "", generation
        )
        message = f"GitLab {self.status['gitlab']['version']}, token {self.status['token']['name']!r}"
        conditions = set_condition(conditions, ConditionType.READY, "True", Reason.RECONCILED, message, generation)
        return {**self.status, "observedGeneration": generation, "conditions": list(conditions)}

    def observe(self) -> None:
        renewal = self.next_check if self.renewable is None else None
        metrics.observe_connection(
            self.ref.namespace or "",
            self.ref.name,
            expires_at=self.expires_at,
            renewal_at=renewal,
            renewable=self.renewable is None,
        )


def parse_spec(raw: Mapping[str, Any]) -> ConnectionSpec:
    try:
        return ConnectionSpec.parse(raw)
    except SpecError as exc:
        raise ReconcileError(Reason.INVALID_SPEC, str(exc), permanent=True) from None


def secrets_namespace(ref: ConnectionRef, policy: ConnectionPolicy) -> str:
    """Where the connection's Secrets live: its own namespace, or the operator's configured one (cluster kind)."""
    if ref.namespace is not None:
        return ref.namespace
    if policy.secret_namespace is None:
        raise ReconcileError(
            Reason.CONNECTION_INVALID,
            "The operator has no namespace for ClusterGitLabConnection Secrets: set the chart value "
            "connections.secretNamespace (GLRT_CONNECTION_NAMESPACE).",
            permanent=True,
        )
    return policy.secret_namespace


def explainer(endpoint: GitLabSpec) -> Any:
    def explain(exc: BaseException) -> ReconcileError | None:
        return connection.explain_gitlab(
            exc,
            endpoint,
            forbidden="reading GitLab's version needs scope api, read_api or read_user.",
            not_found="GitLab has no /api/v4/metadata, /version or /personal_access_tokens/self here: spec.url "
            "must be GitLab's base URL (GitLab 15.10 or later), and the token a personal, group or project one.",
        )

    return explain


def reconcile(
    kube: KubePort,
    pool: GitLabConnector,
    ref: ConnectionRef,
    raw_spec: Mapping[str, Any],
    emit: EventSink,
    log: Logger,
    policy: ConnectionPolicy,
    *,
    now: datetime | None = None,
) -> ConnectionOutcome:
    spec = parse_spec(raw_spec)
    namespace = secrets_namespace(ref, policy)
    endpoint = spec.endpoint
    with failures_explained(explainer(endpoint)):
        gitlab = connection.connect(kube, pool, namespace, endpoint, NEEDS)
        status = dict(kube.read_status(ref.kind, ref.namespace, ref.name))
        if status.get("rotationStartedAt"):
            gitlab = Fence(kube, pool, ref, namespace, spec, status, emit, log, now or datetime.now(UTC)).settle()
            status = dict(kube.read_status(ref.kind, ref.namespace, ref.name))
        instance = gitlab.instance_metadata()
        problem = model.too_old(instance)
        if problem:
            raise ReconcileError(Reason.GITLAB_TOO_OLD, problem, permanent=True)
        token = gitlab.access_token_self()
        problem = model.scopes_missing(token)
        if problem:
            raise ReconcileError(Reason.TOKEN_SCOPES_MISSING, problem, permanent=True)
        why_not = model.rotation_problem(instance, token)
        if why_not is None and not spec.rotation_enabled:
            why_not = "spec.tokenRotation.enabled is false: renew the token by hand before it expires."
        renewal = model.renewal_time(token.expires_at, spec.renew_before)
        current = now or datetime.now(UTC)
        if why_not is None:
            why_not = model.renewal_too_long(current, spec)
        if why_not is None and renewal is not None and current >= renewal:
            token = _rotate(kube, ref, namespace, endpoint, gitlab, token, spec, current, emit, log)
            renewal = model.renewal_time(token.expires_at, spec.renew_before)
            status["lastRotationTime"] = now_iso()
    expiry = model.expiry_instant(token.expires_at)
    fields = {
        "gitlab": {
            "version": instance.version,
            "revision": instance.revision,
            "edition": "EE" if instance.enterprise else "CE",
            "features": model.features(instance),
        },
        "token": {
            "id": token.id,
            "name": token.name,
            "scopes": list(token.scopes),
            "expiresAt": iso(expiry) if expiry else None,
        },
        "renewalTime": iso(renewal) if renewal else None,
        "lastRotationTime": status.get("lastRotationTime"),
    }
    # The renewal daemon wakes at the renewal time (without one: the resync interval), never sooner than a minute
    # from now: a token GitLab capped below renewBefore would otherwise be rotated in a loop.
    next_check = max(renewal, current + MIN_RECHECK) if why_not is None and renewal else None
    return ConnectionOutcome(fields, why_not, next_check, ref, expiry)


def _record(kube: KubePort, ref: ConnectionRef, patch: Mapping[str, Any]) -> None:
    kube.patch_status(ref.kind, ref.namespace, ref.name, patch)


def _store_token(kube: KubePort, namespace: str, endpoint: GitLabSpec, token: str) -> None:
    """The new token into the connection's Secret (its other keys kept)."""
    creds = endpoint.credentials
    secret = kube.read_secret(namespace, creds.name)
    data = dict(secret.data) if secret else {}
    data[creds.key] = token
    kube.apply_secret(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": creds.name, "namespace": namespace},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
    )


def _rotate(
    kube: KubePort,
    ref: ConnectionRef,
    namespace: str,
    endpoint: GitLabSpec,
    gitlab: GitLabPort,
    token: AccessTokenInfo,
    spec: ConnectionSpec,
    now: datetime,
    emit: EventSink,
    log: Logger,
) -> AccessTokenInfo:
    expires_at = model.next_expiry(now, spec.valid_for)
    _record(kube, ref, {"rotationStartedAt": now_iso(), "rotationFromTokenId": token.id})
    try:
        rotated = gitlab.rotate_access_token_self(expires_at)
    except GitLabError as exc:
        if exc.nothing_done:  # refused (4xx): the old token still works; the fence can go
            _record(kube, ref, {"rotationStartedAt": None, "rotationFromTokenId": None})
        # Otherwise the outcome is unknown: the fence stays and the next attempt settles it without rotating.
        raise
    _store_first(kube, namespace, endpoint, rotated.token)
    _record(kube, ref, {"rotationStartedAt": None, "rotationFromTokenId": None, "lastRotationTime": now_iso()})
    message = f"Rotated the access token of {ref} (token {token.id} -> {rotated.info.id}, expires {expires_at})"
    emit("Normal", EventReason.ACCESS_TOKEN_ROTATED, message)
    log.info("%s", message)
    return rotated.info


def _secret_token(kube: KubePort, namespace: str, ref: SecretKeyRef) -> str:
    secret = kube.read_secret(namespace, ref.name)
    return ((secret.value(ref.key) if secret else None) or "").strip()


def _store_first(kube: KubePort, namespace: str, endpoint: GitLabSpec, token: str) -> None:
    """Into the Secret before anything else, tried again at once: until then the new token exists only here."""
    for attempt in range(3):
        try:
            _store_token(kube, namespace, endpoint, token)
            return
        except Exception:
            if attempt == 2:
                raise


@dataclass
class Fence:
    """A rotation was started and not confirmed (a crash, a lost answer): decided from the token in the Secret,
    never by rotating again with it."""

    kube: KubePort
    pool: GitLabConnector
    ref: ConnectionRef
    namespace: str
    spec: ConnectionSpec
    status: Mapping[str, Any]
    emit: EventSink
    log: Logger
    now: datetime

    @property
    def endpoint(self) -> GitLabSpec:
        return self.spec.endpoint

    def settle(self) -> GitLabPort:
        """Clears the fence, or raises; returns a client with the Secret's (now working) token."""
        kube, endpoint = self.kube, self.endpoint
        gitlab = connection.connect(kube, self.pool, self.namespace, endpoint, NEEDS)
        try:
            held = gitlab.access_token_self()
        except GitLabError as exc:
            if exc.status != 401:
                raise
            if self.spec.recovery is None:
                raise self.lost("GitLab revoked it and its successor was never stored.") from None
            return self.recover(self.spec.recovery)
        patch: dict[str, Any] = {"rotationStartedAt": None, "rotationFromTokenId": None}
        if gitlab.current_token() != _secret_token(kube, self.namespace, endpoint.credentials):
            # This process rotated the token and could not write the Secret: the successor it holds goes in now.
            _store_first(kube, self.namespace, endpoint, gitlab.current_token())
        if held.id != self.status.get("rotationFromTokenId"):
            patch["lastRotationTime"] = now_iso()  # the successor was stored before the crash
            self.log.info("the interrupted rotation of %s had stored its new token", self.ref)
        else:
            self.log.info("the interrupted rotation of %s never happened; the token is unchanged", self.ref)
        _record(kube, self.ref, patch)
        return gitlab

    def lost(self, what: str) -> ReconcileError:
        creds, ref = self.endpoint.credentials, self.ref
        where = f" -n {ref.namespace}" if ref.namespace else ""
        repair = (
            "or set spec.tokenRotation.recoverySecretRef to a Secret holding another api token of the same GitLab "
            "user (or an administrator's): the operator then rotates the lost successor by id and stores it."
            if self.spec.recovery is None
            else "or fix the recovery token."
        )
        return ReconcileError(
            Reason.TOKEN_ROTATION_LOST,
            f"A rotation of the access token of {ref} started at {self.status.get('rotationStartedAt')} was not "
            f"confirmed, and GitLab now refuses the token in Secret {creds.name!r} key {creds.key!r} (namespace "
            f"{self.namespace!r}): {what} Put a new token in Secret {creds.name!r} key {creds.key!r}, then clear "
            f"the fence: kubectl patch {ref.kind.plural} {ref.name}{where} --subresource=status --type=merge "
            '-p \'{"status":{"rotationStartedAt":null,"rotationFromTokenId":null}}\'; ' + repair,
            permanent=True,
        )

    def recover(self, recovery: SecretKeyRef) -> GitLabPort:
        """The token in the Secret is revoked and its successor lost: with the recovery token, find the family's
        active token (same user, same name and scopes, not older than the one the rotation started from) and
        rotate it by id with an explicit expiry; the answer is stored first. Re-entrant: a crash in here leaves
        the fence, and the next attempt finds the newer successor the same way."""
        kube, endpoint = self.kube, self.endpoint
        where = (
            f"the recovery token (Secret {recovery.name!r} key {recovery.key!r}, spec.tokenRotation.recoverySecretRef)"
        )
        from_id = self.status.get("rotationFromTokenId")
        if not isinstance(from_id, int):
            raise self.lost("status.rotationFromTokenId does not say which token was rotated.")
        rescuer_spec = GitLabSpec(url=endpoint.url, credentials=recovery, ca=endpoint.ca)
        rescuer = connection.connect(kube, self.pool, self.namespace, rescuer_spec, "another api token of the user")
        try:
            me = rescuer.access_token_self()
            origin = rescuer.access_token(from_id)
            if origin is None or origin.user_id is None:
                raise self.lost(f"{where} may not see token {from_id}: it must be the same user's, with scope api.")
            candidates = [
                t
                for t in rescuer.active_access_tokens(origin.user_id, origin.name)
                if t.name == origin.name and set(t.scopes) == set(origin.scopes) and t.id >= from_id and t.id != me.id
            ]
            if len(candidates) != 1:
                found = "no active successor (the family was revoked)" if not candidates else "several candidates"
                raise self.lost(f"{where} found {found} of token {from_id} ({origin.name!r}).")
            lost = candidates[0]
            expires_at = model.next_expiry(self.now, self.spec.valid_for)
            rotated = rescuer.rotate_access_token(lost.id, expires_at)
        except GitLabError as exc:
            if exc.retryable:
                raise
            raise self.lost(f"{where} failed: {exc}") from None
        _store_first(kube, self.namespace, endpoint, rotated.token)
        _record(kube, self.ref, {"rotationStartedAt": None, "rotationFromTokenId": None, "lastRotationTime": now_iso()})
        message = (
            f"Recovered the access token of {self.ref}: its rotation from token {from_id} was lost; rotated the "
            f"successor {lost.id} by id with the recovery token (-> {rotated.info.id}, expires {expires_at})"
        )
        self.emit("Warning", EventReason.ACCESS_TOKEN_RECOVERED, message)
        self.log.info("%s", message)
        return connection.connect(kube, self.pool, self.namespace, endpoint, NEEDS)
