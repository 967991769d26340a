"""The GitLab version the fake plays, and what that version reports about itself.

``Instance.version`` (default a current release) is what ``GET /metadata`` and ``GET /version`` answer
(https://docs.gitlab.com/api/metadata/), and it gates the features that appeared in a known release: an older
version answers a newer endpoint the way GitLab does for a route it does not have (404 ``{"error":"404 Not Found"}``,
or the next route whose pattern matches), ignores newer parameters and does not know newer token scopes. The
releases come from GitLab's API docs ("history" notes) and release notes:

| Feature | Since |
|---|---|
| ``GET /personal_access_tokens/:id`` / ``DELETE .../self`` / ``GET .../self`` | 15.1 / 15.4 / 15.5 |
| ``GET /metadata``; ``enterprise`` in it; ``/version`` answers the metadata body | 15.2; 15.6; 15.5 |
| ``POST /user/runners`` | 15.10 |
| ``DELETE /runners/managers``; rotate by id (``/personal_access_tokens/:id/rotate``, ``:token_id/rotate``) | 16.0 |
| ``expires_at`` on rotate by id | 16.6 |
| ``maintenance_note`` in ``GET``/``PUT /runners/:id`` | 16.10 |
| ``POST /personal_access_tokens/self/rotate`` | 16.10 |
| ``GET /runners/:id/managers`` | 17.1 |
| ``kas.externalK8sProxyUrl`` in the metadata | 17.6 |
| the ``self_rotate`` scope; group/project ``access_tokens/self/rotate`` | 17.9 |
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Version = tuple[int, int]

DEFAULT_VERSION = "18.6.2-ee"
DEFAULT_REVISION = "4f3a5c0e1d2"

# The feature boundaries of the table above.
PAT_GET_BY_ID: Version = (15, 1)
METADATA: Version = (15, 2)
PAT_DELETE_SELF: Version = (15, 4)
PAT_SELF: Version = (15, 5)
VERSION_IS_METADATA: Version = (15, 5)
METADATA_ENTERPRISE: Version = (15, 6)
USER_RUNNERS: Version = (15, 10)
DELETE_MANAGERS: Version = (16, 0)
ROTATE_BY_ID: Version = (16, 0)
ROTATE_EXPIRES_AT: Version = (16, 6)
RUNNER_MAINTENANCE_NOTE: Version = (16, 10)
PAT_SELF_ROTATE: Version = (16, 10)
RUNNER_MANAGERS: Version = (17, 1)
KAS_K8S_PROXY_URL: Version = (17, 6)
SELF_ROTATE_SCOPE: Version = (17, 9)
RESOURCE_SELF_ROTATE: Version = (17, 9)
RESOURCE_TOKEN_GET: Version = (14, 10)

# Token scopes that a version before their release does not know (a token cannot hold them there).
SCOPE_SINCE: dict[str, Version] = {"self_rotate": SELF_ROTATE_SCOPE}


def parse_version(version: str) -> tuple[int, int, int]:
    """``MAJOR.MINOR.PATCH`` before the first ``-`` (``18.6.2-ee``, ``17.9.0-pre``); missing parts are 0."""
    match = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    if match is None:
        raise ValueError(f"not a GitLab version: {version!r}")
    return int(match[1]), int(match[2] or 0), int(match[3] or 0)


@dataclass
class Instance:
    """The instance the fake plays: version, revision, KAS (the agent server for Kubernetes) and edition.

    ``enterprise`` ``None`` means "from the version": EE versions carry ``-ee``.
    """

    version: str = DEFAULT_VERSION
    revision: str = DEFAULT_REVISION
    kas_enabled: bool = True
    kas_external_url: str | None = "grpc://gitlab.example.com:8150"
    kas_external_k8s_proxy_url: str | None = "https://gitlab.example.com:8150/k8s-proxy"
    kas_version: str | None = None  # None: the version's own MAJOR.MINOR.PATCH
    enterprise: bool | None = None

    FIELDS = (
        "version",
        "revision",
        "kas_enabled",
        "kas_external_url",
        "kas_external_k8s_proxy_url",
        "kas_version",
        "enterprise",
    )

    def at_least(self, since: Version | None) -> bool:
        """Whether this version has a feature released in ``since`` (``None``: always)."""
        return since is None or parse_version(self.version)[:2] >= since

    def knows_scope(self, scope: str) -> bool:
        return self.at_least(SCOPE_SINCE.get(scope))

    @property
    def is_enterprise(self) -> bool:
        return self.enterprise if self.enterprise is not None else "-ee" in self.version

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.FIELDS}

    def update(self, values: dict[str, object]) -> None:
        """Set fields from a control-API body; unknown names or a bad version raise ``ValueError``."""
        unknown = sorted(set(values) - set(self.FIELDS))
        if unknown:
            raise ValueError(f"unknown instance fields: {', '.join(unknown)}")
        if "version" in values:
            parse_version(str(values["version"]))
        for name, value in values.items():
            setattr(self, name, value)
