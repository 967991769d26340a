"""The one catalogue of condition types, condition reasons and Event reasons. Code names a reason through these
enums, never a literal; the operations docs list every one (a test keeps the catalogue and the docs in step)."""

from __future__ import annotations

from enum import StrEnum


class ConditionType(StrEnum):
    READY = "Ready"
    TOKEN_VALID = "TokenValid"
    # The "abnormal-true" conditions GitOps tools read (kstatus: Flux, and the Argo CD checks in docs/): True while
    # a generation is being worked on or a failure that passes by itself is retried; True when only a person can
    # help. False otherwise.
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    # A connection: can the operator renew its access token itself (GitLab's self-rotation)?
    TOKEN_RENEWABLE = "TokenRenewable"


class Reason(StrEnum):
    """Why a condition has its status. A failure's reason is also the reason of its Warning Event."""

    # Ready=True / TokenValid=True (and Reconciling=False, Stalled=False)
    RECONCILED = "Reconciled"
    # Reconciling=True: a new generation is being worked on
    PROGRESSING = "Progressing"
    ACCEPTED = "Accepted"
    REISSUED = "Reissued"
    # the spec and the objects it names
    INVALID_SPEC = "InvalidSpec"
    INVALID_NAME = "InvalidName"
    VALUE_OUT_OF_RANGE = "ValueOutOfRange"
    INVALID_CHARACTERS = "InvalidCharacters"
    CREDENTIALS_MISSING = "CredentialsMissing"
    CA_SECRET_MISSING = "CASecretMissing"
    # spec.gitlab.connectionRef and the connection it names
    CONNECTION_NOT_FOUND = "ConnectionNotFound"
    CONNECTION_NOT_ALLOWED = "ConnectionNotAllowed"
    CONNECTION_INVALID = "ConnectionInvalid"
    INLINE_CONNECTION_REFUSED = "InlineConnectionRefused"
    GITLAB_TOO_OLD = "GitLabTooOld"
    TOKEN_SCOPES_MISSING = "TokenScopesMissing"
    ROTATION_IMPOSSIBLE = "RotationImpossible"
    ROTATION_DISABLED = "RotationDisabled"
    TOKEN_ROTATION_LOST = "TokenRotationLost"
    TOKEN_ROTATING = "TokenRotating"
    CONFIG_SECRET_MISSING = "ConfigSecretMissing"
    NAME_CONFLICT = "NameConflict"
    SECRET_NAME_TAKEN = "SecretNameTaken"
    WAITING_FOR_CLEANUP = "WaitingForCleanup"
    WAITING_FOR_PODS = "WaitingForPods"
    # where job pods run and what they may do there
    NAMESPACE_MISSING = "NamespaceMissing"
    NAMESPACE_NOT_WATCHED = "NamespaceNotWatched"
    NAMESPACE_NOT_ACCEPTING = "NamespaceNotAccepting"
    SERVICE_ACCOUNT_MISSING = "ServiceAccountMissing"
    EXECUTOR_FORBIDDEN = "ExecutorForbidden"
    EXECUTOR_UNSUPPORTED = "ExecutorUnsupported"
    # what GitLab answered
    ACCESS_TOKEN_MALFORMED = "AccessTokenMalformed"
    ACCESS_TOKEN_INVALID = "AccessTokenInvalid"
    ACCESS_TOKEN_FORBIDDEN = "AccessTokenForbidden"
    GITLAB_REJECTED = "GitLabRejected"
    GITLAB_NOT_FOUND = "GitLabNotFound"
    GITLAB_UNAVAILABLE = "GitLabUnavailable"
    GITLAB_UNREACHABLE = "GitLabUnreachable"
    GITLAB_RATE_LIMITED = "GitLabRateLimited"
    GITLAB_THROTTLED = "GitLabThrottled"
    NOT_GITLAB = "NotGitLab"
    GITLAB_ANSWER_INVALID = "GitLabAnswerInvalid"
    RUNNER_MISSING = "RunnerMissing"
    # the connection to GitLab
    CA_INVALID = "CAInvalid"
    TLS_VERIFICATION_FAILED = "TLSVerificationFailed"
    TLS_ERROR = "TLSError"
    # Kubernetes
    KUBERNETES_API_ERROR = "KubernetesAPIError"
    KUBERNETES_UNREACHABLE = "KubernetesUnreachable"
    # a bug
    UNEXPECTED_ERROR = "UnexpectedError"


class EventReason(StrEnum):
    """Normal and Warning Events besides failures (a failure's Event carries its condition `Reason`)."""

    RUNNER_CREATED = "RunnerCreated"
    RUNNER_ADOPTED = "RunnerAdopted"
    RUNNER_UPDATED = "RunnerUpdated"
    RUNNER_MISSING = "RunnerMissing"
    RUNNER_DELETED = "RunnerDeleted"
    RUNNER_DELETE_FORBIDDEN = "RunnerDeleteForbidden"
    TOKEN_ROTATED = "TokenRotated"
    TOKEN_REFUSED = "TokenRefused"
    TOKEN_RESTORED = "TokenRestored"
    MANAGER_REMOVED = "ManagerRemoved"
    UNKNOWN_MANAGER_REMOVED = "UnknownManagerRemoved"
    ORPHAN_SEARCH_FORBIDDEN = "OrphanSearchForbidden"
    ORPHAN_SEARCH_IMPOSSIBLE = "OrphanSearchImpossible"
    TOKEN_CREATED = "TokenCreated"
    TOKEN_RENEWED = "TokenRenewed"
    TOKEN_REVOKED = "TokenRevoked"
    STRAY_TOKEN_REVOKED = "StrayTokenRevoked"
    TOKEN_EXPIRED = "TokenExpired"
    TOKEN_MISSING = "TokenMissing"
    SECRET_STALE = "SecretStale"
    SECRET_UPDATED = "SecretUpdated"
    SECRET_COPY_REMOVED = "SecretCopyRemoved"
    REVOKE_SKIPPED = "RevokeSkipped"
    EXECUTOR_ACCESS_LEFT = "ExecutorAccessLeft"
    ACCESS_TOKEN_ROTATED = "AccessTokenRotated"
    ACCESS_TOKEN_RECOVERED = "AccessTokenRecovered"


# Failures that pass by themselves (the operator retries, nothing to fix): Reconciling=True while they last. Every
# other failure reason needs a person (a Secret, a token, the spec, the cluster): Stalled=True.
RETRYING = frozenset(
    {
        Reason.WAITING_FOR_CLEANUP,
        Reason.WAITING_FOR_PODS,
        Reason.GITLAB_UNAVAILABLE,
        Reason.GITLAB_UNREACHABLE,
        Reason.GITLAB_RATE_LIMITED,
        Reason.GITLAB_THROTTLED,
        Reason.TOKEN_ROTATING,
        Reason.RUNNER_MISSING,
        Reason.KUBERNETES_UNREACHABLE,
    }
)
