"""Bringing GitLab and the cluster in step with one `Runner`: the steps behind the Kopf handlers.

Level-based and idempotent: every call reads what exists and does only what is missing. The one call that is not
idempotent, `POST /user/runners`, is fenced: `status.creationStartedAt` is written before it and the runner id
and token straight after it, and the runner carries an ownership marker, so a retry or a restarted operator finds
the runner it made instead of making a second one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from . import builders
from .conditions import iso, now_iso
from .gitlab import GitLabClient, GitLabError, GitLabPool, IssuedToken, RunnerManager, parse_time
from .kube import GROUP, VERSION, Kube
from .model import RunnerSpec, SpecError
from .replicas import replica_statuses, stray_managers
from .rotation import TokenState, rotation_reason
from .runner_attributes import create_attributes, desired_attributes, drifted, is_owned_by

# How far back from `creationStartedAt` a runner may have been created and still be ours (clock skew).
ORPHAN_WINDOW = timedelta(minutes=5)
# A manager that contacted GitLab this recently proves the token works: no need to ask GitLab about it.
HEALTHY_CONTACT = timedelta(minutes=10)
TOKEN_REFUSED = "GitLab refuses the runner token (revoked or expired outside the operator); issuing a new one."

EventType = Literal["Normal", "Warning"]
EventSink = Callable[[EventType, str, str], None]
TokenCondition = tuple[Literal["True", "False"], str, str]  # the TokenValid condition: status, reason, message


@dataclass(frozen=True)
class RunnerRef:
    namespace: str
    name: str
    uid: str

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> RunnerRef:
        meta = body["metadata"]
        return cls(meta["namespace"], meta["name"], meta["uid"])

    def owner(self) -> dict[str, Any]:
        return builders.owner_reference(f"{GROUP}/{VERSION}", "Runner", self.name, self.uid)


@dataclass(frozen=True)
class ReconcileResult:
    fields: dict[str, Any]  # status fields
    token_condition: TokenCondition


class ReconcileError(Exception):
    """Why a Runner cannot be reconciled now. `permanent`: nothing changes until the Runner itself is edited.
    Otherwise retry after `delay` seconds (GitLab's Retry-After when it sent one)."""

    def __init__(self, reason: str, message: str, *, permanent: bool = False, delay: float | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.permanent = permanent
        self.delay = delay


def explain(exc: GitLabError, spec: RunnerSpec) -> ReconcileError:
    """Turn a GitLab failure into a message that says what to fix."""
    secret = f"Secret {spec.gitlab.credentials.name!r} (key {spec.gitlab.credentials.key!r})"
    hints = {
        401: f"GitLab refused the access token in {secret}: it is unknown, expired or revoked. Put a valid one in.",
        403: f"The access token in {secret} lacks a scope or permission: it needs create_runner (and manage_runner "
        f"to update, rotate and delete) and the right role on the {spec.runner_type.replace('_type', '')}.",
        404: "GitLab does not know this runner, project or group: check spec.projectId / spec.groupId.",
    }
    hint = hints.get(exc.status or 0, "")
    message = f"{exc} {hint}".strip()
    return ReconcileError(exc.reason, message, delay=exc.retry_after)


class Reconciler:
    def __init__(self, kube: Kube, gitlab: GitLabPool, logger: logging.Logger | logging.LoggerAdapter[Any]):
        self.kube = kube
        self.gitlab = gitlab
        self.log = logger

    # --- inputs -----------------------------------------------------------------------------------------------

    def parse(self, spec: Mapping[str, Any]) -> RunnerSpec:
        try:
            return RunnerSpec.parse(spec)
        except SpecError as exc:
            raise ReconcileError("InvalidSpec", str(exc), permanent=True) from None

    def connect(self, ref: RunnerRef, spec: RunnerSpec) -> GitLabClient:
        creds = spec.gitlab.credentials
        # Trailing whitespace is common (`--from-file` of an echoed file) and never part of a token.
        token = (self.kube.read_secret_value(ref.namespace, creds.name, creds.key) or "").strip()
        if not token:
            raise ReconcileError(
                "CredentialsMissing",
                f"Secret {creds.name!r} with key {creds.key!r} not found in namespace {ref.namespace!r}: create it "
                "with a GitLab access token (scopes create_runner, manage_runner and read_api, or api).",
            )
        ca_pem = None
        if spec.gitlab.ca is not None:
            ca_pem = self.kube.read_secret_value(ref.namespace, spec.gitlab.ca.name, spec.gitlab.ca.key)
            if not ca_pem:
                raise ReconcileError(
                    "CASecretMissing",
                    f"Secret {spec.gitlab.ca.name!r} with key {spec.gitlab.ca.key!r} (spec.gitlab.caSecretRef) "
                    f"not found in namespace {ref.namespace!r}.",
                )
        return self.gitlab.client(spec.gitlab.api_url, token, ca_pem)

    # --- the whole reconcile ----------------------------------------------------------------------------------

    def reconcile(self, ref: RunnerRef, raw_spec: Mapping[str, Any], emit: EventSink) -> ReconcileResult:
        """Make GitLab and the children match the spec. Returns the status to write."""
        spec = self.parse(raw_spec)
        gl = self.connect(ref, spec)
        status = self.kube.read_runner_status(ref.namespace, ref.name)
        names = builders.child_names(ref.name)
        token_condition: TokenCondition = ("True", "Accepted", "GitLab accepts the runner token")
        try:
            runner_id, token, fresh = self._ensure_runner(ref, spec, gl, status, emit)
            if not fresh:
                reason = rotation_reason(spec.token_rotation, status, token, datetime.now(UTC), ref.uid)
                if reason is not None:
                    token = self._rotate(ref, spec, gl, runner_id, reason, emit)
            managers = gl.list_managers(runner_id)
            if not fresh and not _recently_contacted(managers) and not gl.token_is_valid(token.token):
                emit("Warning", "TokenRefused", TOKEN_REFUSED)
                self.log.warning("%s", TOKEN_REFUSED)
                token = self._rotate(ref, spec, gl, runner_id, "GitLab refused the token", emit)
                token_condition = ("True", "Reissued", f"{TOKEN_REFUSED} Reissued at {now_iso()}.")
            managers = self._remove_stray_managers(ref, spec, gl, token, managers, emit)
        except GitLabError as exc:
            raise explain(exc, spec) from None
        self._apply_children(ref, spec, runner_id, token.token)
        fields = {
            "runnerId": runner_id,
            "tokenSecretName": names.token_secret,
            "configSecretName": names.config_secret,
            "tokenExpiresAt": iso(token.expires_at),
            "rotationRequestedAt": spec.token_rotation.requested_at,
            "readyReplicas": self.kube.ready_replicas(ref.namespace, names.statefulset),
            "replicas": replica_statuses(ref.name, ref.uid, spec.replicas, managers),
        }
        return ReconcileResult(fields=fields, token_condition=token_condition)

    def _ensure_runner(
        self, ref: RunnerRef, spec: RunnerSpec, gl: GitLabClient, status: Mapping[str, Any], emit: EventSink
    ) -> tuple[int, TokenState, bool]:
        """The runner id, its token, and whether both are brand new; creates, adopts or updates the runner."""
        token_secret = self._own_token_secret(ref)
        runner_id = status.get("runnerId") or _runner_id_of(token_secret)

        if runner_id is not None:
            actual = gl.get_runner(int(runner_id))
            if actual is None:
                emit("Warning", "RunnerMissing", f"Runner {runner_id} no longer exists in GitLab; creating a new one")
                self.log.warning("runner %s is gone from GitLab; creating a new one", runner_id)
                runner_id, token_secret = None, None
                status = {**status, **self._record_runner(ref, None)}
            else:
                changes = drifted(desired_attributes(spec, ref.uid), actual)
                if changes:
                    gl.update_runner(actual.id, changes)
                    fields = ", ".join(sorted(changes))
                    emit("Normal", "RunnerUpdated", f"Updated {fields} of runner {actual.id} in GitLab")
                    self.log.info("updated %s of runner %s in GitLab", fields, actual.id)

        if runner_id is None:
            runner_id, issued = self._create_or_adopt(ref, spec, gl, status, emit)
            return runner_id, _issued_state(issued), True

        if token_secret is None or not token_secret["data"].get("token"):
            # The runner exists but its token was lost (Secret deleted by hand): the only way back is a reset.
            issued = gl.reset_token(int(runner_id))
            self._store_token(ref, int(runner_id), issued)
            emit("Warning", "TokenRestored", f"The token Secret was missing; reset the token of runner {runner_id}")
            return int(runner_id), _issued_state(issued), True
        annotations = token_secret["annotations"]
        state = TokenState(
            token=token_secret["data"]["token"],
            expires_at=parse_time(annotations.get(builders.ANNOTATION_TOKEN_EXPIRES_AT)),
            obtained_at=parse_time(annotations.get(builders.ANNOTATION_TOKEN_OBTAINED_AT)),
        )
        return int(runner_id), state, False

    def _rotate(
        self, ref: RunnerRef, spec: RunnerSpec, gl: GitLabClient, runner_id: int, reason: str, emit: EventSink
    ) -> TokenState:
        """Reset the token and store the new one. `rotationStartedAt` fences the reset: if the operator dies
        before the new token is stored, the next reconcile resets again rather than keep a dead token."""
        self.kube.patch_runner_status(ref.namespace, ref.name, {"rotationStartedAt": now_iso()})
        issued = gl.reset_token(runner_id)
        self._store_token(ref, runner_id, issued)
        done = {
            "rotationStartedAt": None,
            "tokenRotatedAt": now_iso(),
            "rotationRequestedAt": spec.token_rotation.requested_at,
        }
        self.kube.patch_runner_status(ref.namespace, ref.name, done)
        emit("Normal", "TokenRotated", f"Rotated the token of runner {runner_id}: {reason}")
        self.log.info("rotated the token of runner %s: %s", runner_id, reason)
        return _issued_state(issued)

    def _remove_stray_managers(
        self,
        ref: RunnerRef,
        spec: RunnerSpec,
        gl: GitLabClient,
        token: TokenState,
        managers: list[RunnerManager],
        emit: EventSink,
    ) -> list[RunnerManager]:
        """Delete the managers no replica backs: a scaled-away replica's once its pod is gone, unknown ones at
        once. Returns the managers that remain."""
        stray = stray_managers(ref.uid, spec.replicas, managers)
        doomed: list[tuple[RunnerManager, EventType, str, str]] = [
            (manager, "Normal", "ManagerRemoved", f"of scaled-away replica {ordinal}")
            for ordinal, manager in sorted(stray.scaled_away.items())
            # A pod still stopping may contact GitLab once more: wait until it is gone.
            if not self.kube.pod_exists(ref.namespace, f"{ref.name}-{ordinal}")
        ]
        doomed += [(m, "Warning", "UnknownManagerRemoved", "that belongs to no replica") for m in stray.unknown]
        removed: set[str] = set()
        for manager, kind, reason, which in doomed:
            gl.delete_manager(token.token, manager.system_id)
            removed.add(manager.system_id)
            emit(kind, reason, f"Removed runner manager {manager.system_id} {which}")
        return [m for m in managers if m.system_id not in removed]

    def _check_names_free(self, ref: RunnerRef) -> None:
        """Before anything is created in GitLab: the objects this Runner will own must not exist, or be ours.
        One still owned by an earlier Runner of the same name is about to be garbage-collected: wait for it."""
        names = builders.child_names(ref.name)
        secret_owners = {
            f"Secret {name!r}": (self.kube.read_secret(ref.namespace, name) or {"owners": None})["owners"]
            for name in (names.token_secret, names.config_secret)
        }
        existing = {
            **secret_owners,
            f"StatefulSet {names.statefulset!r}": self.kube.statefulset_owners(ref.namespace, names.statefulset),
        }
        for what, owners in existing.items():
            if owners is None or ref.uid in owners:
                continue
            if owners:
                raise ReconcileError(
                    "WaitingForCleanup", f"{what} still belongs to an earlier object; waiting for its removal"
                )
            raise ReconcileError(
                "NameConflict",
                f"{what} already exists in namespace {ref.namespace!r} and is not managed by this Runner: "
                "delete or rename it (the operator names its objects after the Runner).",
            )

    def _create_or_adopt(
        self, ref: RunnerRef, spec: RunnerSpec, gl: GitLabClient, status: Mapping[str, Any], emit: EventSink
    ) -> tuple[int, IssuedToken]:
        self._check_names_free(ref)
        started = parse_time(status.get("creationStartedAt"))
        if started is not None:
            orphan = self._find_orphan_or_warn(ref, spec, gl, started, emit, then="creating a new runner")
            if orphan is not None:
                # Created by an earlier attempt whose reply was lost: its token was never seen, so reset it.
                issued = gl.reset_token(orphan)
                self._store_token(ref, orphan, issued)
                self._record_runner(ref, orphan)
                emit("Normal", "RunnerAdopted", f"Adopted runner {orphan}, created by an interrupted attempt")
                self.log.info("adopted runner %s created by an interrupted attempt", orphan)
                return orphan, issued
        else:
            self.kube.patch_runner_status(ref.namespace, ref.name, {"creationStartedAt": now_iso()})

        created = gl.create_runner(create_attributes(spec, ref.uid))
        # Persist before anything else can fail: the token exists nowhere else.
        self._store_token(ref, created.id, created.token)
        self._record_runner(ref, created.id)
        emit("Normal", "RunnerCreated", f"Created {spec.runner_type} runner {created.id} in GitLab")
        self.log.info("created %s runner %s in GitLab", spec.runner_type, created.id)
        return created.id, created.token

    def _record_runner(self, ref: RunnerRef, runner_id: int | None) -> dict[str, Any]:
        """Record the runner just created or adopted (its token already stored), or None for one gone from GitLab;
        returns the status written. Both fences go: a creation is done or moot, and a rotation fence of an earlier
        runner must not reset the token of the one that replaces it."""
        recorded = {"runnerId": runner_id, "creationStartedAt": None, "rotationStartedAt": None}
        self.kube.patch_runner_status(ref.namespace, ref.name, recorded)
        return recorded

    def _find_orphan_or_warn(
        self, ref: RunnerRef, spec: RunnerSpec, gl: GitLabClient, since: datetime, emit: EventSink, then: str
    ) -> int | None:
        """`find_orphan`, or None with a warning saying what happens `then` when the token may not list runners."""
        try:
            return self.find_orphan(ref, spec, gl, since)
        except GitLabError as exc:
            if exc.status != 403:
                raise
        # Listing runners needs read_api (or api); create_runner + manage_runner alone cannot search.
        message = (
            "An earlier creation attempt was interrupted and the access token cannot list runners (it needs the "
            f"read_api or api scope) to find what it may have created; {then}. Check GitLab for a "
            f"runner whose maintenance note names Runner uid {ref.uid}."
        )
        emit("Warning", "OrphanSearchForbidden", message)
        self.log.warning("%s", message)
        return None

    def find_orphan(self, ref: RunnerRef, spec: RunnerSpec, gl: GitLabClient, since: datetime) -> int | None:
        """A runner carrying this Runner's ownership marker, created since the recorded creation attempt."""
        if spec.runner_type == "project_type":
            path = f"/projects/{spec.project_id}/runners"
        elif spec.runner_type == "group_type":
            path = f"/groups/{spec.group_id}/runners"
        else:
            path = "/runners/all"
        for item in gl.list_runners(path, type=spec.runner_type):
            created = parse_time(item.created_at)
            if created is None or created < since - ORPHAN_WINDOW:
                continue
            details = gl.get_runner(item.id)
            if details is not None and is_owned_by(details.maintenance_note, ref.uid):
                return item.id
        return None

    def _own_token_secret(self, ref: RunnerRef) -> dict[str, Any] | None:
        """The token Secret, unless it still belongs to an earlier Runner of the same name (awaiting garbage
        collection): its runner is not ours to adopt."""
        secret = self.kube.read_secret(ref.namespace, builders.child_names(ref.name).token_secret)
        if secret is not None and ref.uid not in secret["owners"]:
            self.log.info("ignoring token Secret left by an earlier Runner of the same name")
            return None
        return secret

    def _store_token(self, ref: RunnerRef, runner_id: int, issued: IssuedToken) -> None:
        names = builders.child_names(ref.name)
        self.kube.apply_secret(
            builders.build_token_secret(
                name=names.token_secret,
                namespace=ref.namespace,
                owner=ref.owner(),
                runner_name=ref.name,
                runner_id=runner_id,
                token=issued.token,
                token_expires_at=iso(issued.expires_at),
                token_obtained_at=now_iso(),
            )
        )

    def _apply_children(self, ref: RunnerRef, spec: RunnerSpec, runner_id: int, token: str) -> None:
        names = builders.child_names(ref.name)
        ca_key = (spec.gitlab.ca.name, spec.gitlab.ca.key) if spec.gitlab.ca else None
        rendered = builders.render_config_toml(
            spec,
            runner_name=ref.name,
            runner_id=runner_id,
            token=token,
            ca_path=builders.CA_FILE if ca_key else None,
            default_namespace=ref.namespace,
        )
        self.kube.apply_secret(
            builders.build_config_secret(
                name=names.config_secret,
                namespace=ref.namespace,
                owner=ref.owner(),
                runner_name=ref.name,
                runner_uid=ref.uid,
                replicas=spec.replicas,
                rendered=rendered,
            )
        )
        self.kube.apply_statefulset(
            builders.build_statefulset(
                spec,
                name=names.statefulset,
                namespace=ref.namespace,
                owner=ref.owner(),
                config_secret=names.config_secret,
                config_checksum=rendered.token_free_sha256,
                ca_secret_key=ca_key,
            )
        )

    # --- deletion ---------------------------------------------------------------------------------------------

    def unregister(self, ref: RunnerRef, raw_spec: Mapping[str, Any], emit: EventSink) -> None:
        """Delete the runner in GitLab (404 counts as done). The children go by garbage collection."""
        spec = self.parse(raw_spec)
        status = self.kube.read_runner_status(ref.namespace, ref.name)
        token_secret = self._own_token_secret(ref)
        runner_id = status.get("runnerId") or _runner_id_of(token_secret)
        started = parse_time(status.get("creationStartedAt"))
        if runner_id is None and started is None:
            return  # never got as far as GitLab
        try:
            gl = self.connect(ref, spec)
        except ReconcileError:
            runner_token = (token_secret or {}).get("data", {}).get("token")
            if runner_id is None or not runner_token:
                raise
            # The access token is gone (often: the namespace is being deleted) but the runner token is at hand.
            self._delete_with_runner_token(ref, spec, int(runner_id), runner_token, emit)
            return
        try:
            if runner_id is None and started is not None:
                runner_id = self._find_orphan_or_warn(
                    ref, spec, gl, started, emit, then="it stays in GitLab if it exists"
                )
            if runner_id is None:
                return
            if gl.delete_runner(int(runner_id)):
                emit("Normal", "RunnerDeleted", f"Deleted runner {runner_id} in GitLab")
                self.log.info("deleted runner %s in GitLab", runner_id)
            else:
                self.log.info("runner %s was already gone from GitLab", runner_id)
        except GitLabError as exc:
            raise explain(exc, spec) from None

    def _delete_with_runner_token(
        self, ref: RunnerRef, spec: RunnerSpec, runner_id: int, runner_token: str, emit: EventSink
    ) -> None:
        gl = self.gitlab.client(spec.gitlab.api_url, "")
        try:
            deleted = gl.delete_runner_by_token(runner_token)
        except GitLabError as exc:
            raise explain(exc, spec) from None
        if deleted:
            emit("Normal", "RunnerDeleted", f"Deleted runner {runner_id} in GitLab with its own token")
            self.log.info("deleted runner %s in GitLab with its own token", runner_id)


def _issued_state(issued: IssuedToken) -> TokenState:
    return TokenState(token=issued.token, expires_at=issued.expires_at, obtained_at=datetime.now(UTC))


def _recently_contacted(managers: list[RunnerManager]) -> bool:
    horizon = datetime.now(UTC) - HEALTHY_CONTACT
    return any((t := parse_time(m.contacted_at)) is not None and t > horizon for m in managers)


def _runner_id_of(token_secret: Mapping[str, Any] | None) -> int | None:
    raw = (token_secret or {}).get("annotations", {}).get(builders.ANNOTATION_RUNNER_ID)
    return int(raw) if raw and str(raw).isdigit() else None
