"""Runner and DeployToken objects with the status shapes that GitOps tools judge health by: as the operator writes
them today (conditions Ready and TokenValid, status.observedGeneration only once a generation was reconciled), and
as it should write them so that kstatus (Flux) and Argo CD tell "working on it" from "stuck until someone fixes it".

The target, in kstatus' terms (sigs.k8s.io/cli-utils/pkg/kstatus/status, "abnormal-true" conditions):
- ``status.observedGeneration`` is the generation the status describes, written with every status write, failures
  included (today a failure leaves it at the last reconciled generation, or absent on a new object);
- ``Reconciling=True`` from the moment the operator picks up a generation (created, or edited) until it is
  reconciled, and while a failure that passes by itself is retried (GitLab down, rate limited, a predecessor being
  garbage-collected); ``False`` (or absent) otherwise. Timers (resync, token renewal) do not set it: a renewal is
  no change of desired state, and Argo CD would flap the application to Progressing at every one;
- ``Stalled=True`` with the failure's reason and message when nothing changes until someone acts (a bad credential,
  a missing Secret, a name conflict, a spec GitLab refuses): ``False`` (or absent) otherwise;
- ``Ready`` as today.

Each builder returns a fresh dict, shaped as the apiserver returns the object (``kubectl get -o json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from glrt_operator.core.api import API_VERSION

GROUP_VERSION = API_VERSION
T0, T1 = "2026-10-01T08:00:00Z", "2026-10-01T08:05:00Z"

Kind = Literal["Runner", "DeployToken"]

# Every failure reason of the operator's catalogue (glrt_operator.core.reasons, docs/operations/troubleshooting.md),
# split by who resolves it (with the executor reasons about to join it). The operator retries all of them with
# back-off; the split says whether retrying alone can ever succeed. A test fails on a reason left out.
STALLED_REASONS = (
    "InvalidSpec",
    "ConnectionNotFound",
    "ConnectionNotAllowed",
    "ConnectionInvalid",
    "InlineConnectionRefused",
    "GitLabTooOld",
    "TokenScopesMissing",
    "TokenRotationLost",
    "InvalidName",
    "ValueOutOfRange",
    "InvalidCharacters",
    "CredentialsMissing",
    "CASecretMissing",
    "ConfigSecretMissing",
    "NameConflict",
    "SecretNameTaken",
    "NamespaceMissing",
    "NamespaceNotWatched",
    "NamespaceNotAccepting",
    "ServiceAccountMissing",
    "ExecutorForbidden",
    "ExecutorUnsupported",
    "AccessTokenMalformed",
    "AccessTokenInvalid",
    "AccessTokenForbidden",
    "GitLabRejected",
    "GitLabNotFound",
    "NotGitLab",
    "GitLabAnswerInvalid",
    "CAInvalid",
    "TLSVerificationFailed",
    "TLSError",
    "KubernetesAPIError",
    "UnexpectedError",
)
RETRYING_REASONS = (
    "WaitingForCleanup",
    "WaitingForPods",
    "GitLabUnavailable",
    "GitLabUnreachable",
    "GitLabRateLimited",
    "GitLabThrottled",
    "TokenRotating",
    "RunnerMissing",
    "KubernetesUnreachable",
)
# Reasons of conditions that are True: no failure (Progressing: Reconciling=True while a generation is worked on).
# RotationImpossible and RotationDisabled: a connection's TokenRenewable=False while it is Ready.
SUCCESS_REASONS = ("Reconciled", "Accepted", "Reissued", "Progressing", "RotationImpossible", "RotationDisabled")

BAD_CREDENTIAL = "GitLab answered 401: the access token is unknown, expired or revoked. Put a valid one in the Secret."


def condition(type_: str, status: str, reason: str, message: str, generation: int, at: str = T0) -> dict[str, Any]:
    """A metav1.Condition as the operator's set_condition writes it."""
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": at,
    }


def ready(generation: int, kind: Kind = "Runner") -> dict[str, Any]:
    message = (
        "Runner 42 is registered in GitLab; 2/2 pod(s) ready, 2 online in GitLab"
        if kind == "Runner"
        else "Deploy token 7 (gitlab+deploy-token-7) is in the Secret; it expires 2026-11-01T00:00:00Z"
    )
    return condition("Ready", "True", "Reconciled", message, generation)


def token_valid(generation: int, kind: Kind = "Runner") -> dict[str, Any]:
    message = "GitLab accepts the runner token" if kind == "Runner" else "GitLab lists it as active"
    return condition("TokenValid", "True", "Accepted", message, generation)


def not_ready(reason: str, message: str, generation: int) -> dict[str, Any]:
    return condition("Ready", "False", reason, message, generation, T1)


def reconciling(reason: str, message: str, generation: int) -> dict[str, Any]:
    return condition("Reconciling", "True", reason, message, generation, T1)


def stalled(reason: str, message: str, generation: int) -> dict[str, Any]:
    return condition("Stalled", "True", reason, message, generation, T1)


def resolved(type_: str, generation: int) -> dict[str, Any]:
    """Reconciling or Stalled turned False once the cause is gone (kept, as set_condition keeps conditions)."""
    return condition(type_, "False", "Reconciled", "", generation, T1)


def obj(
    kind: Kind,
    *,
    generation: int,
    observed: int | None,
    conditions: list[dict[str, Any]] | None,
    deleting: bool = False,
    name: str = "builds",
) -> dict[str, Any]:
    """A Runner or DeployToken; ``observed=None`` leaves status.observedGeneration out, ``conditions=None`` the
    whole status (a new object the operator has not written to yet)."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": "ci",
        "uid": "0b6f3a52-5a4e-4c3e-9d55-5f0d2b1c9e01",
        "generation": generation,
        "creationTimestamp": T0,
        "finalizers": ["glrt.dev/runner" if kind == "Runner" else "glrt.dev/deploytoken"],
    }
    if deleting:
        metadata["deletionTimestamp"] = T1
    spec: dict[str, Any] = (
        {
            "gitlab": {"url": "https://gitlab.example.com", "credentialsSecretRef": {"name": "gitlab-api"}},
            "runnerType": "project_type",
            "projectId": 7,
            "replicas": 2,
        }
        if kind == "Runner"
        else {
            "gitlab": {"url": "https://gitlab.example.com", "credentialsSecretRef": {"name": "gitlab-api"}},
            "projectId": 7,
            "scopes": ["read_registry"],
            "secret": {"name": "registry-pull", "registry": "registry.example.com"},
        }
    )
    body: dict[str, Any] = {"apiVersion": GROUP_VERSION, "kind": kind, "metadata": metadata, "spec": spec}
    if conditions is not None:
        status: dict[str, Any] = {"conditions": conditions}
        if observed is not None:
            status["observedGeneration"] = observed
        if kind == "Runner" and observed is not None:
            status.update({"runnerId": 42, "readyReplicas": 2})
        body["status"] = status
    return body


@dataclass(frozen=True)
class Shape:
    """One status shape and what kstatus computes for it (``reason``: the Stalled reason kstatus reports)."""

    id: str
    kind: Kind
    today: bool  # written by today's operator; False: the target shape
    body: dict[str, Any]
    kstatus: str
    reason: str | None = None


def shapes(kind: Kind) -> list[Shape]:
    """Every shape of ``kind``, today's and the target's."""
    r, t = (lambda g: ready(g, kind)), (lambda g: token_valid(g, kind))
    transient = "GitLab answered 503 Service Unavailable; retrying with back-off"
    return [
        # --- what the operator writes today -----------------------------------------------------------------
        Shape("new-no-status", kind, True, obj(kind, generation=1, observed=None, conditions=None), "Current"),
        Shape("ready", kind, True, obj(kind, generation=1, observed=1, conditions=[t(1), r(1)]), "Current"),
        Shape("edited", kind, True, obj(kind, generation=2, observed=1, conditions=[t(1), r(1)]), "InProgress"),
        Shape(
            "new-bad-credential",
            kind,
            True,
            obj(kind, generation=1, observed=None, conditions=[not_ready("AccessTokenInvalid", BAD_CREDENTIAL, 1)]),
            "InProgress",
        ),
        Shape(
            "edited-to-bad-credential",
            kind,
            True,
            obj(
                kind,
                generation=2,
                observed=1,
                conditions=[t(1), not_ready("AccessTokenInvalid", BAD_CREDENTIAL, 2)],
            ),
            "InProgress",
        ),
        Shape(
            "gitlab-down",
            kind,
            True,
            obj(kind, generation=1, observed=1, conditions=[t(1), not_ready("GitLabUnavailable", transient, 1)]),
            "InProgress",
        ),
        Shape(
            "deleting",
            kind,
            True,
            obj(kind, generation=1, observed=1, conditions=[t(1), r(1)], deleting=True),
            "Terminating",
        ),
        # --- the target ----------------------------------------------------------------------------------------
        Shape(
            "new-reconciling",
            kind,
            False,
            obj(kind, generation=1, observed=1, conditions=[reconciling("Creating", f"Creating the {kind}", 1)]),
            "InProgress",
        ),
        Shape(
            "edited-reconciling",
            kind,
            False,
            obj(
                kind,
                generation=2,
                observed=2,
                conditions=[t(1), r(1), reconciling("SpecChanged", "Applying generation 2", 2)],
            ),
            "InProgress",
        ),
        Shape(
            "reconciled",
            kind,
            False,
            obj(kind, generation=2, observed=2, conditions=[t(2), r(2), resolved("Reconciling", 2)]),
            "Current",
        ),
        Shape(
            "bad-credential-stalled",
            kind,
            False,
            obj(
                kind,
                generation=1,
                observed=1,
                conditions=[
                    not_ready("AccessTokenInvalid", BAD_CREDENTIAL, 1),
                    resolved("Reconciling", 1),
                    stalled("AccessTokenInvalid", BAD_CREDENTIAL, 1),
                ],
            ),
            "Failed",
            "AccessTokenInvalid",
        ),
        Shape(
            "edited-to-bad-credential-stalled",
            kind,
            False,
            obj(
                kind,
                generation=2,
                observed=2,
                conditions=[
                    t(1),
                    not_ready("AccessTokenInvalid", BAD_CREDENTIAL, 2),
                    resolved("Reconciling", 2),
                    stalled("AccessTokenInvalid", BAD_CREDENTIAL, 2),
                ],
            ),
            "Failed",
            "AccessTokenInvalid",
        ),
        # The user fixed the spec: before the operator even looked, the new generation is InProgress, not Failed.
        Shape(
            "stalled-then-edited",
            kind,
            False,
            obj(
                kind,
                generation=3,
                observed=2,
                conditions=[
                    not_ready("AccessTokenInvalid", BAD_CREDENTIAL, 2),
                    stalled("AccessTokenInvalid", BAD_CREDENTIAL, 2),
                ],
            ),
            "InProgress",
        ),
        Shape(
            "gitlab-down-retrying",
            kind,
            False,
            obj(
                kind,
                generation=1,
                observed=1,
                conditions=[
                    t(1),
                    not_ready("GitLabUnavailable", transient, 1),
                    reconciling("GitLabUnavailable", transient, 1),
                    resolved("Stalled", 1),
                ],
            ),
            "InProgress",
        ),
        Shape(
            "recovered",
            kind,
            False,
            obj(
                kind,
                generation=1,
                observed=1,
                conditions=[t(1), r(1), resolved("Reconciling", 1), resolved("Stalled", 1)],
            ),
            "Current",
        ),
    ]


def failure(kind: Kind, reason: str, generation: int = 1) -> dict[str, Any]:
    """The target shape of a failure with ``reason``: Stalled for the reasons only a person resolves, Reconciling
    for those that pass by themselves; observedGeneration written either way."""
    message = f"{reason}: what to fix, as the operator words it"
    extra = (
        stalled(reason, message, generation)
        if reason in STALLED_REASONS
        else reconciling(reason, f"{message}; retrying", generation)
    )
    return obj(
        kind, generation=generation, observed=generation, conditions=[not_ready(reason, message, generation), extra]
    )
