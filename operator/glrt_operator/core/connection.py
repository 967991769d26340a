"""How a resource reaches GitLab: `spec.gitlab` (URL, access-token Secret, CA, or a reference to a GitLabConnection
or ClusterGitLabConnection) parsed and resolved, the client built from it, and GitLab's failures explained with the
fields a user fixes. Shared by every resource that talks to GitLab."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .api import CLUSTER_GITLAB_CONNECTION, GITLAB_CONNECTION, Kind
from .errors import ReconcileError
from .gitlab import GitLabError
from .ports import GitLabConnector, GitLabPort, KubePort
from .reasons import Reason
from .spec import SecretKeyRef, SpecError, get_field, secret_ref

DEFAULT_CREDENTIALS_KEY = "token"
DEFAULT_CA_KEY = "ca.crt"
_URL = re.compile(r"^https?://[^\s/]+(/[^\s]*)?$")


CONNECTION_KINDS = {kind.kind: kind for kind in (GITLAB_CONNECTION, CLUSTER_GITLAB_CONNECTION)}


@dataclass(frozen=True)
class ConnectionRef:
    """`spec.gitlab.connectionRef`: a GitLabConnection of the resource's namespace or a ClusterGitLabConnection."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r}"


@dataclass(frozen=True)
class GitLabSpec:
    """Where GitLab is and with which access token. Unresolved (`connection` set): only the reference is known,
    `resolve` reads the rest from the connection. Resolved from a connection: `via` names it and `namespace` is
    where its Secrets live (None: the resource's own namespace)."""

    url: str
    credentials: SecretKeyRef
    ca: SecretKeyRef | None = None
    connection: ConnectionRef | None = None
    via: ConnectionRef | None = None
    namespace: str | None = None

    @property
    def api_url(self) -> str:
        return self.url.rstrip("/") + "/api/v4"

    def secrets_namespace(self, own: str) -> str:
        return self.namespace or own


@dataclass(frozen=True)
class ConnectionPolicy:
    """The administrator's settings for connections: the namespace of ClusterGitLabConnections' Secrets (None: no
    ClusterGitLabConnection can be used) and whether inline `spec.gitlab.url` + credentials are refused."""

    secret_namespace: str | None = None
    refuse_inline: bool = False


DEFAULT_POLICY = ConnectionPolicy()


def parse_endpoint(gitlab: Mapping[str, Any], where: str) -> GitLabSpec:
    """URL, access-token Secret and CA of `where` (`spec.gitlab` inline, or a connection's `spec`)."""
    url = get_field(gitlab, "url", str, where, "")
    if not _URL.match(url):
        raise SpecError(f"{where}.url: {url!r} is not an http(s) URL like https://gitlab.example.com")
    credentials = secret_ref(gitlab, "credentialsSecretRef", where, DEFAULT_CREDENTIALS_KEY)
    if credentials is None:
        raise SpecError(f"{where}.credentialsSecretRef is required: name the Secret holding the access token")
    return GitLabSpec(url=url, credentials=credentials, ca=secret_ref(gitlab, "caSecretRef", where, DEFAULT_CA_KEY))


def parse_gitlab(spec: Mapping[str, Any]) -> GitLabSpec:
    """`spec.gitlab`, or SpecError naming the field."""
    gitlab = get_field(spec, "gitlab", Mapping, "spec")
    if gitlab is None:
        raise SpecError(
            "spec.gitlab is required: set spec.gitlab.connectionRef, or spec.gitlab.url and "
            "spec.gitlab.credentialsSecretRef"
        )
    ref = get_field(gitlab, "connectionRef", Mapping, "spec.gitlab")
    if ref is None:
        return parse_endpoint(gitlab, "spec.gitlab")
    inline = [key for key in ("url", "credentialsSecretRef", "caSecretRef") if gitlab.get(key) is not None]
    if inline:
        raise SpecError(
            f"spec.gitlab: set either connectionRef or {', '.join(inline)}, not both (the connection names them)"
        )
    kind = get_field(ref, "kind", str, "spec.gitlab.connectionRef", GITLAB_CONNECTION.kind)
    if kind not in CONNECTION_KINDS:
        raise SpecError(f"spec.gitlab.connectionRef.kind: {kind!r} is not GitLabConnection or ClusterGitLabConnection")
    name = get_field(ref, "name", str, "spec.gitlab.connectionRef", "")
    if not name:
        raise SpecError("spec.gitlab.connectionRef.name is required: name the connection")
    unresolved = SecretKeyRef("", DEFAULT_CREDENTIALS_KEY)
    return GitLabSpec(url="", credentials=unresolved, connection=ConnectionRef(kind, name))


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against labels; `{}` matches everything."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or ():
        key, op, values = expr.get("key", ""), expr.get("operator", ""), set(expr.get("values") or ())
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False  # an operator the CRD does not allow selects nothing
    return True


def allows(allowed: Mapping[str, Any], namespace: str, labels: Mapping[str, str] | None) -> bool:
    """Does a ClusterGitLabConnection's `spec.allowedNamespaces` allow `namespace` (with these labels)?"""
    if namespace in (allowed.get("names") or ()):
        return True
    selector = allowed.get("selector")
    return selector is not None and labels is not None and selector_matches(selector, labels)


def resolve(kube: KubePort, namespace: str, gitlab: GitLabSpec, policy: ConnectionPolicy) -> GitLabSpec:
    """`spec.gitlab` of a resource in `namespace` as URL, access-token Secret and CA: itself when inline, else read
    from the connection it names. A connection that is missing, does not allow the namespace or is invalid is a
    ReconcileError naming both; nothing is sent to GitLab."""
    ref = gitlab.connection
    if ref is None:
        if policy.refuse_inline and gitlab.via is None:
            raise ReconcileError(
                Reason.INLINE_CONNECTION_REFUSED,
                "The administrator refuses spec.gitlab.url and credentialsSecretRef in this cluster: set "
                "spec.gitlab.connectionRef to a GitLabConnection or ClusterGitLabConnection instead.",
                permanent=True,
            )
        return gitlab
    kind: Kind = CONNECTION_KINDS[ref.kind]
    cluster = kind is CLUSTER_GITLAB_CONNECTION
    where = "" if cluster else f" in namespace {namespace!r}"
    body = kube.read_object(kind, None if cluster else namespace, ref.name)
    if body is None:
        other = GITLAB_CONNECTION if cluster else CLUSTER_GITLAB_CONNECTION
        raise ReconcileError(
            Reason.CONNECTION_NOT_FOUND,
            f"spec.gitlab.connectionRef names {ref}, which does not exist{where}: create it, or check the name and "
            f"the kind (a {other.kind} is a different kind).",
        )
    spec = body.get("spec") or {}
    if cluster:
        allowed = spec.get("allowedNamespaces") or {}
        if not allows(allowed, namespace, kube.namespace_labels(namespace)):
            raise ReconcileError(
                Reason.CONNECTION_NOT_ALLOWED,
                f"{ref} does not allow namespace {namespace!r}: its administrator adds the namespace to "
                "spec.allowedNamespaces.names or labels it to match spec.allowedNamespaces.selector.",
            )
        if policy.secret_namespace is None:
            raise ReconcileError(
                Reason.CONNECTION_INVALID,
                f"spec.gitlab.connectionRef names {ref}, but the operator has no namespace for the Secrets of "
                "ClusterGitLabConnections: set the chart value connections.secretNamespace "
                "(GLRT_CONNECTION_NAMESPACE).",
                permanent=True,
            )
    try:
        endpoint = parse_endpoint(spec, f"{ref.kind}.spec")
    except SpecError as exc:
        raise ReconcileError(Reason.CONNECTION_INVALID, f"{ref}: {exc}") from None
    return GitLabSpec(
        url=endpoint.url,
        credentials=endpoint.credentials,
        ca=endpoint.ca,
        via=ref,
        namespace=policy.secret_namespace if cluster else None,
    )


def read_ca(kube: KubePort, namespace: str, gitlab: GitLabSpec) -> str | None:
    """The CA bundle of spec.gitlab.caSecretRef, None without one; CASecretMissing when it names nothing."""
    ca = gitlab.ca
    if ca is None:
        return None
    namespace = gitlab.secrets_namespace(namespace)
    secret = kube.read_secret(namespace, ca.name)
    ca_pem = secret.value(ca.key) if secret else None
    if not ca_pem:
        field = f"caSecretRef of {gitlab.via}" if gitlab.via else "spec.gitlab.caSecretRef"
        raise ReconcileError(
            Reason.CA_SECRET_MISSING,
            f"Secret {ca.name!r} with key {ca.key!r} ({field}) not found in namespace {namespace!r}.",
        )
    return ca_pem


def connect(kube: KubePort, pool: GitLabConnector, namespace: str, gitlab: GitLabSpec, needs: str) -> GitLabPort:
    """A GitLab client with the access token of spec.gitlab.credentialsSecretRef (and the CA, when set); `needs` says
    which access token to put in the Secret when it is missing."""
    if gitlab.connection is not None:
        raise AssertionError("connect() needs a resolved spec.gitlab (connection.resolve)")
    own = namespace
    namespace = gitlab.secrets_namespace(own)
    creds = gitlab.credentials
    secret = kube.read_secret(namespace, creds.name)
    # Trailing whitespace is common (`--from-file` of an echoed file) and never part of a token.
    token = ((secret.value(creds.key) if secret else None) or "").strip()
    if not token:
        via = f" ({gitlab.via}, used by namespace {own!r})" if gitlab.via else ""
        raise ReconcileError(
            Reason.CREDENTIALS_MISSING,
            f"Secret {creds.name!r} with key {creds.key!r} not found in namespace {namespace!r}{via}: create it "
            f"with a GitLab access token ({needs}).",
        )
    return pool.client(gitlab.api_url, token, read_ca(kube, own, gitlab))


def connect_without_token(kube: KubePort, pool: GitLabConnector, namespace: str, gitlab: GitLabSpec) -> GitLabPort:
    """A client for calls that carry their own credential (a runner token in the body), verified with the CA."""
    return pool.client(gitlab.api_url, "", read_ca(kube, namespace, gitlab))


def explain_gitlab(exc: BaseException, gitlab: GitLabSpec, *, forbidden: str, not_found: str) -> ReconcileError | None:
    """A GitLab failure as a message that says what to fix: the hints every resource shares, and the resource's
    own for 403 (`forbidden`: which scopes and role) and 404 (`not_found`: which ids). None for other failures."""
    if not isinstance(exc, GitLabError):
        return None
    secret = f"Secret {gitlab.credentials.name!r} (key {gitlab.credentials.key!r})"
    if gitlab.via:
        secret += f" of {gitlab.via}"
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
