"""The DeployToken's Kopf registrations: each names the use case and hands it to the controller runtime, which owns
the policy (priorities, retries, conditions, Events). Renewal is a resync that wakes at the token's renewal time or
the end of a grace period."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import kopf

from .. import metrics
from ..controller import runtime
from ..controller.runtime import Call
from ..core.api import DEPLOY_TOKEN, GROUP, VERSION
from ..core.namespaces import EVERY_NAMESPACE
from .context import DeployTokenRef
from .deletion import delete_deploy_token
from .reconcile import DeployTokenOutcome, open_context, reconcile
from .status import DeployTokenStatus

DEPLOY_TOKENS = runtime.Resource(DEPLOY_TOKEN, "deploytoken", metrics.DEPLOY_TOKEN)
DELETE_ATTEMPTS = 5  # then a deletion whose access token is gone lets the object go (the tokens still expire)


def reconcile_deploy_token(call: Call) -> DeployTokenOutcome:
    """Keep the token alive in its Secret (`deploytokens.reconcile`)."""
    ref = DeployTokenRef.from_body(call.body)
    scope = call.memo.get("scope", EVERY_NAMESPACE)
    ctx = open_context(call.kube, call.gitlab, ref, call.spec, call.emit, call.log, scope, runtime.CONFIG.connections)
    return reconcile(ctx)


def revoke_deploy_tokens(call: Call) -> None:
    """Revoke its tokens in GitLab (`deploytokens.deletion`)."""
    ref = DeployTokenRef.from_body(call.body)
    give_up = call.retry >= DELETE_ATTEMPTS
    policy = replace(runtime.CONFIG.connections, refuse_inline=False)  # a deletion cleans up whatever the spec
    delete_deploy_token(call.kube, call.gitlab, ref, call.spec, call.emit, call.log, give_up=give_up, policy=policy)


@kopf.on.create(GROUP, VERSION, DEPLOY_TOKEN.plural)
@kopf.on.update(GROUP, VERSION, DEPLOY_TOKEN.plural, field="spec")
def on_deploy_token_changed(**kwargs: Any) -> None:
    """Created or edited: reconcile with Kopf's retries and back-off."""
    runtime.on_event(DEPLOY_TOKENS, reconcile_deploy_token, kwargs)


@kopf.on.resume(GROUP, VERSION, DEPLOY_TOKEN.plural)
async def on_deploy_token_resumed(**kwargs: Any) -> None:
    """Found at operator start, unchanged since it was last handled: a resync."""
    await runtime.on_resume(DEPLOY_TOKENS, reconcile_deploy_token, kwargs)


@kopf.daemon(GROUP, VERSION, DEPLOY_TOKEN.plural, cancellation_timeout=30)
async def renew_deploy_token(**kwargs: Any) -> None:
    """Wakes at the token's renewal time or the end of a grace period, else every resync interval."""
    first = DeployTokenStatus.from_dict(kwargs["status"]).next_check()
    await runtime.renewal_daemon(DEPLOY_TOKENS, reconcile_deploy_token, first, kwargs)


@kopf.on.delete(GROUP, VERSION, DEPLOY_TOKEN.plural)
def on_deploy_token_deleted(**kwargs: Any) -> None:
    """Deleted: revoke its tokens in GitLab before Kopf releases the finalizer."""
    runtime.on_delete(DEPLOY_TOKENS, revoke_deploy_tokens, kwargs)
