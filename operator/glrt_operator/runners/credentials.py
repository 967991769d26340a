"""The credentials spec.config references (`<key>SecretRef: {name, key}`), read from their Secrets.

Read before anything is written to GitLab or the cluster: a missing Secret or key stops the reconcile with a
condition naming the Secret, the key and the field (never a value), and the handler's back-off retries it, so
the Runner becomes Ready once the Secret is created. Values are only ever written into the config Secret.
"""

from __future__ import annotations

from ..core.errors import ReconcileError
from ..core.reasons import Reason
from ..runner_config.credentials import SecretRef, TomlPath, credential_plan, resolved_credentials
from .context import RunnerContext


def config_credentials(ctx: RunnerContext) -> dict[TomlPath, str]:
    """The `credentials` argument of render_config_toml: inline values and mounted file paths, by TOML path."""
    plan = credential_plan(ctx.spec.config.values)
    refs = [*plan.inline.values(), *plan.file_refs.values()]
    secrets: dict[str, dict[str, str] | None] = {}
    values: dict[SecretRef, str] = {}
    for ref in refs:
        if ref.name not in secrets:
            found = ctx.kube.read_secret(ctx.ref.namespace, ref.name)
            secrets[ref.name] = None if found is None else dict(found.data)
        data = secrets[ref.name]
        where = f"({ref.source}) in namespace {ctx.ref.namespace!r}"
        if data is None:
            raise ReconcileError(Reason.CONFIG_SECRET_MISSING, f"Secret {ref.name!r} {where} not found: create it.")
        # A trailing newline (`kubectl create secret --from-file` of an echoed file) is never part of a credential.
        value = (data.get(ref.key) or "").rstrip("\r\n")
        if not value:
            raise ReconcileError(
                Reason.CONFIG_SECRET_MISSING, f"Secret {ref.name!r} has no key {ref.key!r} (or it is empty) {where}."
            )
        values[ref] = value
    return resolved_credentials(plan, values)
