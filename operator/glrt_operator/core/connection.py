"""How a resource reaches GitLab: `spec.gitlab` (URL, access-token Secret, CA) parsed, the client built from it,
and GitLab's failures explained with the fields a user fixes. Shared by every resource that talks to GitLab."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ReconcileError
from .gitlab import GitLabError
from .ports import GitLabConnector, GitLabPort, KubePort
from .reasons import Reason
from .spec import SecretKeyRef, SpecError, get_field, secret_ref

DEFAULT_CREDENTIALS_KEY = "token"
DEFAULT_CA_KEY = "ca.crt"
_URL = re.compile(r"^https?://[^\s/]+(/[^\s]*)?$")


@dataclass(frozen=True)
class GitLabSpec:
    url: str
    credentials: SecretKeyRef
    ca: SecretKeyRef | None = None

    @property
    def api_url(self) -> str:
        return self.url.rstrip("/") + "/api/v4"


def parse_gitlab(spec: Mapping[str, Any]) -> GitLabSpec:
    """`spec.gitlab`, or SpecError naming the field."""
    gitlab = get_field(spec, "gitlab", Mapping, "spec")
    if gitlab is None:
        raise SpecError("spec.gitlab is required: set spec.gitlab.url and spec.gitlab.credentialsSecretRef")
    url = get_field(gitlab, "url", str, "spec.gitlab", "")
    if not _URL.match(url):
        raise SpecError(f"spec.gitlab.url: {url!r} is not an http(s) URL like https://gitlab.example.com")
    credentials = secret_ref(gitlab, "credentialsSecretRef", "spec.gitlab", DEFAULT_CREDENTIALS_KEY)
    if credentials is None:
        raise SpecError("spec.gitlab.credentialsSecretRef is required: name the Secret holding the access token")
    return GitLabSpec(
        url=url, credentials=credentials, ca=secret_ref(gitlab, "caSecretRef", "spec.gitlab", DEFAULT_CA_KEY)
    )


def read_ca(kube: KubePort, namespace: str, gitlab: GitLabSpec) -> str | None:
    """The CA bundle of spec.gitlab.caSecretRef, None without one; CASecretMissing when it names nothing."""
    ca = gitlab.ca
    if ca is None:
        return None
    secret = kube.read_secret(namespace, ca.name)
    ca_pem = secret.value(ca.key) if secret else None
    if not ca_pem:
        raise ReconcileError(
            Reason.CA_SECRET_MISSING,
            f"Secret {ca.name!r} with key {ca.key!r} (spec.gitlab.caSecretRef) not found in namespace {namespace!r}.",
        )
    return ca_pem


def connect(kube: KubePort, pool: GitLabConnector, namespace: str, gitlab: GitLabSpec, needs: str) -> GitLabPort:
    """A GitLab client with the access token of spec.gitlab.credentialsSecretRef (and the CA, when set); `needs` says
    which access token to put in the Secret when it is missing."""
    creds = gitlab.credentials
    secret = kube.read_secret(namespace, creds.name)
    # Trailing whitespace is common (`--from-file` of an echoed file) and never part of a token.
    token = ((secret.value(creds.key) if secret else None) or "").strip()
    if not token:
        raise ReconcileError(
            Reason.CREDENTIALS_MISSING,
            f"Secret {creds.name!r} with key {creds.key!r} not found in namespace {namespace!r}: create it "
            f"with a GitLab access token ({needs}).",
        )
    return pool.client(gitlab.api_url, token, read_ca(kube, namespace, gitlab))


def connect_without_token(kube: KubePort, pool: GitLabConnector, namespace: str, gitlab: GitLabSpec) -> GitLabPort:
    """A client for calls that carry their own credential (a runner token in the body), verified with the CA."""
    return pool.client(gitlab.api_url, "", read_ca(kube, namespace, gitlab))


def explain_gitlab(exc: BaseException, gitlab: GitLabSpec, *, forbidden: str, not_found: str) -> ReconcileError | None:
    """A GitLab failure as a message that says what to fix: the hints every resource shares, and the resource's
    own for 403 (`forbidden`: which scopes and role) and 404 (`not_found`: which ids). None for other failures."""
    if not isinstance(exc, GitLabError):
        return None
    secret = f"Secret {gitlab.credentials.name!r} (key {gitlab.credentials.key!r})"
    ca = gitlab.ca
    hints: dict[int | str, str] = {
        401: f"GitLab refused the access token in {secret}: it is unknown, expired or revoked. Put a valid one in.",
        403: f"The access token in {secret} lacks a scope or permission: {forbidden}",
        404: not_found,
        Reason.ACCESS_TOKEN_MALFORMED: f"Re-create {secret} with the bare token (no byte-order mark, quotes or inner "
        "whitespace), e.g. kubectl create secret generic --from-literal.",
        Reason.CA_INVALID: f"Put a PEM CA bundle in Secret {ca.name!r} key {ca.key!r} (spec.gitlab.caSecretRef)."
        if ca
        else "",
        Reason.TLS_VERIFICATION_FAILED: "Set spec.gitlab.caSecretRef to a Secret holding the CA that signs GitLab's "
        "certificate.",
    }
    hint = hints.get(exc.kind or "", "") or hints.get(exc.status or 0, "")
    message = f"{exc} {hint}".strip()
    return ReconcileError(exc.reason, message, delay=exc.retry_after, transient=exc.retryable)
