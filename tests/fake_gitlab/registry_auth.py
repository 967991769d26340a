"""``/jwt/auth``: the token endpoint GitLab's container registry sends clients to.

How GitLab configures its registry (https://docs.gitlab.com/administration/packages/container_registry/): the
registry's ``auth.token`` has ``realm`` = GitLab's ``/jwt/auth``, ``service`` = ``container_registry``, ``issuer`` =
``gitlab-issuer`` and ``rootcertbundle`` = the certificate of the key GitLab signs with. A client the registry
answered 401 asks the realm for a token (Distribution's token authentication,
https://distribution.github.io/distribution/spec/auth/token/): ``GET /jwt/auth?service=...&scope=...`` with HTTP
Basic credentials, and presents the RS256 JWT it gets to the registry, which checks the signature against the
certificate and grants what the token's ``access`` lists.

What GitLab answers, after its ``JwtController`` and ``Auth::ContainerRegistryAuthenticationService``:

- credentials: a personal access token as the password (any username), or a deploy token's username and token;
  anything else given with Basic auth is 401 ``UNAUTHORIZED`` "HTTP Basic: Access denied...". No credentials:
  anonymous, with read-only abilities.
- an unknown ``service``: 404 with an empty body.
- credentials without any registry ability (e.g. a deploy token with only ``read_repository``): 403 ``DENIED``
  "access forbidden"; anonymous with no scope it may use, likewise.
- each ``scope`` (``repository:<path>:<actions>``; several ``scope`` parameters or space-separated ones) is granted
  the actions the credentials allow on the project the path belongs to: ``pull`` with ``read_registry`` (or a
  user's read access), ``push`` with ``write_registry`` (or Developer+); a deploy token only on its project or on
  the projects below its group. A scope granted nothing is left out of ``access``.
- the reply is ``{"token": <JWT>}``; the JWT (``kid`` = the RFC 7638 thumbprint of the signing key, the form
  Distribution v3 looks up for a ``rootcertbundle`` certificate) carries ``iss``, ``aud`` = the service, ``sub``
  (a user's name), ``iat``/``nbf``/``exp`` (5 minutes, GitLab's default token expire delay), ``access``,
  ``auth_type`` and ``user``.

Not modelled: CI job tokens (``gitlab-ci-token``), users' passwords, LFS tokens, protected repository paths and tags,
the dependency proxy service, Rack::Attack bans. The JWT's times come from the real clock, not the fake's (the
registry checks them against its own clock); which credentials are valid follows the fake's clock.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from . import api, deploy_tokens
from .api import Ctx, Response
from .deploy_tokens import DeployToken
from .state import DEVELOPER, Project, State, User

SERVICE = "container_registry"
ISSUER = "gitlab-issuer"
TOKEN_LIFETIME_SECONDS = 5 * 60  # container_registry_token_expire_delay, 5 minutes by default
HELP_PATH = (
    "/help/user/profile/account/two_factor_authentication_troubleshooting.md"
    "#error-http-basic-access-denied-if-a-password-was-provided-for-git-authentication-"
)

# Gitlab::Auth: the abilities each token scope gives, and those of an anonymous request.
READ_ONLY = ("read_project", "download_code", "read_container_image")
FULL = (*READ_ONLY, "push_code", "create_container_image", "admin_container_image")
ABILITIES_BY_SCOPE: dict[str, tuple[str, ...]] = {
    "api": FULL,
    "read_api": READ_ONLY,
    "read_registry": ("read_container_image",),
    "write_registry": ("create_container_image",),
    "read_repository": ("download_code",),
    "write_repository": ("download_code", "push_code"),
}
REGISTRY_ABILITIES = frozenset({"read_container_image", "create_container_image", "admin_container_image"})
# ContainerRegistry::Path: lower-case components separated by "/", at least two of them (namespace and project).
REPOSITORY_PATH = re.compile(r"\A[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+\Z")
MAX_PATH_LENGTH = 255


# ----------------------------------------------------------------------------- the signing key
@dataclass(frozen=True)
class SigningKey:
    """The key ``/jwt/auth`` signs with, and the self-signed certificate the registry's ``rootcertbundle`` holds."""

    private_key: Any  # cryptography's RSAPrivateKey
    certificate_pem: bytes
    kid: str


def signing_key(state: State) -> SigningKey:
    """The fake's signing key, made on first use (one per fake GitLab)."""
    if state.registry_signing_key is None:
        state.registry_signing_key = _new_signing_key()
    key: SigningKey = state.registry_signing_key
    return key


def _new_signing_key() -> SigningKey:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gitlab-issuer")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    numbers = key.public_key().public_numbers()
    return SigningKey(
        private_key=key,
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM),
        kid=jwk_thumbprint(numbers.n, numbers.e),
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def jwk_thumbprint(n: int, e: int) -> str:
    """RFC 7638 thumbprint (SHA-256, base64url) of an RSA public key: the ``kid`` Distribution v3 derives for each
    ``rootcertbundle`` certificate."""
    members = f'{{"e":"{_b64(_int_bytes(e))}","kty":"RSA","n":"{_b64(_int_bytes(n))}"}}'
    return _b64(hashlib.sha256(members.encode()).digest())


def encode_jwt(key: SigningKey, claims: dict[str, Any]) -> str:
    """An RS256 JWS in compact form."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    header = {"typ": "JWT", "alg": "RS256", "kid": key.kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = key.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


# ----------------------------------------------------------------------------- who is asking
@dataclass(frozen=True)
class Actor:
    """``Gitlab::Auth::Result``: who authenticated, how, and the abilities the credentials give."""

    auth_type: str  # none, personal_access_token or deploy_token
    abilities: frozenset[str]
    user: User | None = None
    deploy_token: DeployToken | None = None


def _access_denied(ctx: Ctx) -> api.ApiError:
    message = (
        "HTTP Basic: Access denied. If a password was provided for Git authentication, the password was incorrect "
        "or you're required to use a token instead of a password. If a token was provided, it was either "
        f"incorrect, expired, or improperly scoped. See {ctx.req.base_url}{HELP_PATH}"
    )
    return api.ApiError(401, {"errors": [{"code": "UNAUTHORIZED", "message": message}]})


def _abilities(scopes: list[str]) -> frozenset[str]:
    return frozenset(a for scope in scopes for a in ABILITIES_BY_SCOPE.get(scope, ()))


def authenticate(ctx: Ctx) -> Actor:
    """``JwtController#authenticate_project_or_user``: anonymous without Basic auth, else a personal access token
    (the password, any username) or a deploy token (username and token); 401 for anything else."""
    header = ctx.req.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return Actor("none", frozenset(READ_ONLY))
    try:
        login, _, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except ValueError:
        raise _access_denied(ctx) from None
    state = ctx.state
    access = state.access_tokens.get(password) if password else None
    now = state.clock.now()
    if access is not None and not access.revoked and not access.expired(now) and access.user_id in state.users:
        user = state.users[access.user_id]
        ctx.info.user = user.username
        return Actor("personal_access_token", _abilities(access.scopes), user=user)
    try:
        dt = deploy_tokens.authenticate(state, login, password)
    except deploy_tokens.ExpiryDisagreement:
        raise api.ApiError(500, {"message": "500 Internal Server Error"}) from None
    if dt is None:
        raise _access_denied(ctx)
    ctx.info.user = dt.username
    return Actor("deploy_token", _abilities(dt.scopes), deploy_token=dt)


# ----------------------------------------------------------------------------- what it may do
def repository_project(state: State, path: str) -> Project | None:
    """The project a registry path belongs to: the one whose full path is the longest leading part of it."""
    components = path.split("/")
    by_path = {state.project_full_path(p).lower(): p for p in state.projects.values()}
    for length in range(len(components), 1, -1):
        project = by_path.get("/".join(components[:length]))
        if project is not None:
            return project
    return None


def _covers(state: State, dt: DeployToken, project: Project) -> bool:
    """A project token covers its project's images; a group token those of every project below the group."""
    if dt.project_id == project.id:
        return True
    return dt.group_id is not None and dt.group_id in {g.id for g in state.project_groups(project)}


def _user_can(state: State, user: User | None, project: Project, needed: int) -> bool:
    """Read (``needed`` 0) follows the project's visibility and membership; writing needs the role ``needed``."""
    if user is not None and user.admin:
        return True
    level = state.project_access(user, project) if user is not None else 0
    if needed == 0:
        return project.visibility == "public" or (project.visibility == "internal" and user is not None) or level > 0
    return level >= needed


def _allowed(state: State, actor: Actor, project: Project, action: str) -> bool:
    """``can_access?``: a user's rights through the token's abilities, or a deploy token's on its projects."""
    user, dt = actor.user, actor.deploy_token
    ability = {"pull": "read_container_image", "push": "create_container_image"}.get(action, "admin_container_image")
    if ability not in actor.abilities or action not in ("pull", "push", "delete", "*"):
        return False
    if dt is not None:  # a deploy token pulls and pushes on its projects, never deletes
        return action in ("pull", "push") and _covers(state, dt, project)
    if action == "pull":
        return _user_can(state, user, project, 0)
    return user is not None and _user_can(state, user, project, DEVELOPER)


def _process_scope(state: State, actor: Actor, scope: str) -> dict[str, Any] | None:
    parts = scope.split(":", 2)
    if len(parts) < 3:
        return None
    kind, name, actions_text = parts
    actions = [a for a in actions_text.split(",") if a]
    if kind == "registry":  # the catalog: administrators only
        if actor.user is not None and actor.user.admin and name == "catalog" and actions == ["*"]:
            return {"type": "registry", "name": "catalog", "actions": ["*"]}
        return None
    if kind != "repository" or len(name) > MAX_PATH_LENGTH or not REPOSITORY_PATH.match(name):
        return None
    project = repository_project(state, name)
    if project is None:
        return None
    granted = [a for a in actions if _allowed(state, actor, project, a)]
    if not granted:
        return None
    groups = state.project_groups(project)
    root = groups[-1].id if groups else None
    meta = {"project_path": state.project_full_path(project).lower(), "project_id": project.id}
    if root is not None:
        meta["root_namespace_id"] = root
    return {"type": "repository", "name": name, "actions": granted, "meta": meta}


# ----------------------------------------------------------------------------- the endpoint
def _time_claims() -> dict[str, Any]:
    issued = int(time.time())
    return {"jti": str(uuid.uuid4()), "iat": issued, "nbf": issued - 5, "exp": issued + TOKEN_LIFETIME_SECONDS}


def registry_auth(ctx: Ctx, m: re.Match[str]) -> Response:
    """``GET /jwt/auth?service=container_registry&scope=repository:<path>:pull,push``, Basic auth optional."""
    actor = authenticate(ctx)
    if ctx.req.query.get("service") != SERVICE:
        return Response(404, text="", content_type="text/html")
    if not actor.abilities & REGISTRY_ABILITIES:
        raise api.ApiError(403, {"errors": [{"code": "DENIED", "message": "access forbidden"}]})
    requested = [part for key, value in ctx.req.query_pairs if key == "scope" for part in value.split()]
    state = ctx.state
    access = [a for a in (_process_scope(state, actor, s) for s in requested) if a is not None]
    if not access and actor.user is None and actor.deploy_token is None:
        raise api.ApiError(403, {"errors": [{"code": "DENIED", "message": "access forbidden"}]})
    key = signing_key(state)
    user_info: dict[str, Any] | None = None
    if actor.user is not None:
        user_info = {"token_type": actor.auth_type, "username": actor.user.username, "user_id": actor.user.id}
    elif actor.deploy_token is not None:
        dt = actor.deploy_token
        user_info = {"token_type": actor.auth_type, "username": dt.username, "deploy_token_id": dt.id}
    claims: dict[str, Any] = {**_time_claims(), "aud": SERVICE, "iss": ISSUER}
    if actor.user is not None:
        claims["sub"] = actor.user.username
    claims["auth_type"] = actor.auth_type
    claims["access"] = access
    claims["user"] = encode_jwt(key, {**_time_claims(), "user_info": user_info})
    return Response(200, {"token": encode_jwt(key, claims)})


def post_not_routed(ctx: Ctx, m: re.Match[str]) -> Response:
    """GitLab routes only GET to ``/jwt/auth``: a POST (containerd's OAuth2 attempt) is 404, and clients fall back
    to GET with Basic auth."""
    return Response(404, text="", content_type="text/html")


ROUTES: list[tuple[str, str, api.Handler]] = [
    ("GET", r"/jwt/auth", registry_auth),
    ("POST", r"/jwt/auth", post_not_routed),
]

for _method, _pattern, _handler in ROUTES:
    api.register(_method, _pattern, _handler)
