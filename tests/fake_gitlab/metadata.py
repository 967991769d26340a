"""``GET /metadata`` and ``GET /version`` (https://docs.gitlab.com/api/metadata/).

Both answer the same body since 15.5 (``/version`` is deprecated); before that ``/version`` answered only
``version`` and ``revision``, and ``/metadata`` did not exist before 15.2. ``enterprise`` appeared in 15.6 and
``kas.externalK8sProxyUrl`` in 17.6. Any authenticated user may call them with a token holding ``api``,
``read_api`` or ``read_user``; another scope alone (``read_repository``, say) is 403, no token 401.
The values come from :class:`tests.fake_gitlab.versions.Instance` (``FakeGitLab.instance``).
"""

from __future__ import annotations

import re
from typing import Any

from . import api
from .api import Ctx, Response
from .versions import KAS_K8S_PROXY_URL, METADATA, METADATA_ENTERPRISE, VERSION_IS_METADATA, Instance, parse_version

SCOPES = ("api", "read_api", "read_user")


def metadata_body(instance: Instance) -> dict[str, Any]:
    """The metadata body of this instance; KAS fields are null when KAS is off."""
    major, minor, patch = parse_version(instance.version)
    on = instance.kas_enabled
    kas: dict[str, Any] = {
        "enabled": on,
        "externalUrl": instance.kas_external_url if on else None,
        "externalK8sProxyUrl": instance.kas_external_k8s_proxy_url if on else None,
        "version": (instance.kas_version or f"{major}.{minor}.{patch}") if on else None,
    }
    if not instance.at_least(KAS_K8S_PROXY_URL):
        del kas["externalK8sProxyUrl"]
    body: dict[str, Any] = {"version": instance.version, "revision": instance.revision, "kas": kas}
    if instance.at_least(METADATA_ENTERPRISE):
        body["enterprise"] = instance.is_enterprise
    return body


def get_metadata(ctx: Ctx, m: re.Match[str]) -> Response:
    """``GET /metadata`` (15.2+)."""
    ctx.authenticate(SCOPES)
    return Response(200, metadata_body(ctx.state.instance))


def get_version(ctx: Ctx, m: re.Match[str]) -> Response:
    """``GET /version``: the metadata body since 15.5, ``{version, revision}`` before."""
    ctx.authenticate(SCOPES)
    instance = ctx.state.instance
    if instance.at_least(VERSION_IS_METADATA):
        return Response(200, metadata_body(instance))
    return Response(200, {"version": instance.version, "revision": instance.revision})


api.register("GET", r"/metadata", get_metadata, since=METADATA)
api.register("GET", r"/version", get_version)
