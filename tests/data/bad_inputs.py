"""A corpus of bad input, as data: what a hostile or careless user (or a GitLab URL that is not GitLab) gives the
operator. Each entry is either refused by the CRD at apply time (`expect="apply"`) or must end in a Ready=False
condition with one of `reasons` and a message, with no traceback and no hot loop (`expect="condition"`).

Used by the reconcile tier (every entry, in-process), the e2e tier (a lean slice, `E2E`) and `make chaos` (every
entry against a real apiserver and the operator as a process).

Entries patch a valid base spec (`patch`, deep-merged; `DROP` removes a key) and may replace the Runner's name,
the access token in its credentials Secret, the CA Secret, or spec.gitlab.url (`url`: an `impostor:<kind>` of
tests/harness/impostor.py, `closed-port`, or `fake-subpath`: the fake GitLab under a path it does not serve).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

DROP = object()
CORPUS_PROJECT_NO_MEMBER = 901  # a project the corpus' tokens' owner is not a member of
CORPUS_UNKNOWN_ID = 987654
# Access tokens the corpus refers to by name; `seed` creates them in the fake GitLab.
READ_ONLY_TOKEN = "glpat-corpus-read-only-0001"
CLOSED_NAMESPACE = "corpus-closed"  # a namespace without glrt.dev/accept-from


@dataclass(frozen=True)
class BadInput:
    id: str
    kind: str  # the class: name, tags, spec, token, ca, url, gitlab, conflict
    expect: Literal["apply", "condition"]
    patch: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    access_token: str | None = None  # the credentials Secret's value; None: the valid token
    ca: str | None = None  # the CA Secret's value (spec.gitlab.caSecretRef set to it); None: no CA
    url: str | None = None
    # foreign-statefulset | foreign-token-secret | closed-namespace (CLOSED_NAMESPACE exists, accepting nobody)
    setup: str | None = None
    # condition: the reasons any of which is right; apply: what the operator says when it meets the input anyway
    # (an object stored before the schema had the rule), "accepted" when it normalises it, or "schema-only" when
    # the operator does not check it again (it fails later, classified, if it ever gets through).
    reasons: tuple[str, ...] = ()

    def spec(self, base: Mapping[str, Any]) -> dict[str, Any]:
        return merge(copy.deepcopy(dict(base)), self.patch)


def merge(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if value is DROP:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def _apply(
    id_: str, kind: str, patch: Mapping[str, Any] | None = None, reason: str = "InvalidSpec", **kw: Any
) -> BadInput:
    return BadInput(id_, kind, "apply", patch or {}, reasons=(reason,), **kw)


def _cond(id_: str, kind: str, reasons: tuple[str, ...], patch: Mapping[str, Any] | None = None, **kw: Any) -> BadInput:
    return BadInput(id_, kind, "condition", patch or {}, reasons=reasons, **kw)


PEM_GARBLED = "-----BEGIN CERTIFICATE-----\nTUlJQm9ndXM=\n-----END CERTIFICATE-----\n"
PEM_KEY = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IGVpdGhlcg==\n-----END PRIVATE KEY-----\n"
MALFORMED = ("AccessTokenMalformed",)
NOT_GITLAB = ("NotGitLab", "GitLabAnswerInvalid")
REFUSED = ("GitLabNotFound", "AccessTokenForbidden", "GitLabRejected")

CORPUS: tuple[BadInput, ...] = (
    # --- names valid for the CRD's metadata but not for the objects derived from them ----------------------------
    _apply("name-dot", "name", name="builds.v2", reason="InvalidName"),
    _apply("name-dots", "name", name="a.b.c", reason="InvalidName"),
    _apply("name-53", "name", name="r" * 53, reason="InvalidName"),
    _apply("name-63", "name", name="r" * 63, reason="InvalidName"),
    _apply("name-dot-end-digit", "name", name="team.a1", reason="InvalidName"),
    # --- tags -------------------------------------------------------------------------------------------------
    _apply("tag-leading-space", "tags", {"tags": [" docker"]}, reason="accepted"),
    _apply("tag-trailing-space", "tags", {"tags": ["docker "]}, reason="accepted"),
    _apply("tag-tab", "tags", {"tags": ["\tci"]}, reason="accepted"),
    _apply("tag-newline", "tags", {"tags": ["ci\n"]}, reason="accepted"),
    _apply("tag-both-spaces", "tags", {"tags": ["  linux  ", "docker"]}, reason="accepted"),
    _apply("tag-comma", "tags", {"tags": ["a,b"]}),
    _apply("tag-empty", "tags", {"tags": [""]}),
    _apply("tag-blank", "tags", {"tags": ["   "]}),
    _apply("tag-256", "tags", {"tags": ["t" * 256]}, reason="schema-only"),
    _apply("tags-51", "tags", {"tags": [f"t{i}" for i in range(51)]}),
    _apply("tags-duplicate", "tags", {"tags": ["a", "a"]}, reason="accepted"),
    _apply("untagged-off-no-tags", "tags", {"runUntagged": False, "tags": []}),
    # --- other spec fields --------------------------------------------------------------------------------------
    _apply("description-1025", "spec", {"description": "d" * 1025}),
    _apply("note-901", "spec", {"maintenanceNote": "n" * 901}),
    _apply("url-ftp", "spec", {"gitlab": {"url": "ftp://gitlab.example.com"}}),
    _apply("url-no-scheme", "spec", {"gitlab": {"url": "gitlab.example.com"}}),
    _apply("url-space", "spec", {"gitlab": {"url": "https://gitlab example.com"}}),
    _apply("url-empty-host", "spec", {"gitlab": {"url": "https://"}}),
    _apply("url-javascript", "spec", {"gitlab": {"url": "javascript:alert(1)"}}),
    _apply("url-2049", "spec", {"gitlab": {"url": "https://g.example.com/" + "p" * 2030}}, reason="schema-only"),
    _apply("type-shared", "spec", {"runnerType": "shared"}),
    _apply("type-case", "spec", {"runnerType": "Project_Type"}),
    _apply("project-0", "spec", {"projectId": 0}),
    _apply("project-negative", "spec", {"projectId": -1}),
    _apply("project-2e53", "spec", {"projectId": 2**53}),
    _apply("project-string", "spec", {"projectId": "7"}),
    _apply("project-float", "spec", {"projectId": 1.5}),
    _apply("project-missing", "spec", {"projectId": DROP}),
    _apply("project-with-group-type", "spec", {"runnerType": "group_type", "groupId": 3}),
    _apply("group-0", "spec", {"runnerType": "group_type", "projectId": DROP, "groupId": 0}),
    _apply("timeout-599", "spec", {"maximumTimeout": 599}),
    _apply("timeout-2e31", "spec", {"maximumTimeout": 2**31}),
    _apply("replicas-negative", "spec", {"replicas": -1}),
    _apply("replicas-101", "spec", {"replicas": 101}),
    _apply("replicas-string", "spec", {"replicas": "2"}),
    _apply("renew-space", "spec", {"tokenRotation": {"renewBefore": "72 h"}}),
    _apply("renew-days", "spec", {"tokenRotation": {"renewBefore": "3d"}}),
    _apply("renew-negative", "spec", {"tokenRotation": {"renewBefore": "-1h"}}),
    _apply("renew-overflow", "spec", {"tokenRotation": {"renewBefore": "99999999999999999999h"}}),
    _apply("requested-at-65", "spec", {"tokenRotation": {"requestedAt": "x" * 65}}, reason="accepted"),
    _apply("access-level", "spec", {"accessLevel": "protected"}),
    _apply("paused-string", "spec", {"paused": "yes"}),
    _apply("locked-number", "spec", {"locked": 1}),
    _apply("creds-name-empty", "spec", {"gitlab": {"credentialsSecretRef": {"name": ""}}}),
    _apply("creds-name-upper", "spec", {"gitlab": {"credentialsSecretRef": {"name": "Bad_Name"}}}),
    _apply("creds-key-slash", "spec", {"gitlab": {"credentialsSecretRef": {"key": "a/b"}}}, reason="accepted"),
    _apply("ca-name-upper", "spec", {"gitlab": {"caSecretRef": {"name": "CA"}}}),
    _apply("manager-image-empty", "spec", {"manager": {"image": ""}}, reason="schema-only"),
    _apply("manager-image-space", "spec", {"manager": {"image": "bad image"}}, reason="schema-only"),
    _apply("manager-pull-policy", "spec", {"manager": {"imagePullPolicy": "Sometimes"}}, reason="schema-only"),
    _apply("manager-sa-space", "spec", {"manager": {"serviceAccountName": "Bad Name"}}, reason="schema-only"),
    _apply("manager-label-value-64", "spec", {"manager": {"podLabels": {"team": "v" * 64}}}, reason="schema-only"),
    _apply("manager-label-key-space", "spec", {"manager": {"podLabels": {"bad key": "v"}}}, reason="schema-only"),
    # --- values the schema cannot refuse ------------------------------------------------------------------------
    _cond("renew-too-long", "spec", ("InvalidSpec",), {"tokenRotation": {"renewBefore": "999999h"}}),
    # --- the access token ---------------------------------------------------------------------------------------
    _cond("token-bom", "token", MALFORMED, access_token="\ufeff{token}"),
    _cond("token-inner-space", "token", MALFORMED, access_token="{token} x"),
    _cond("token-inner-newline", "token", MALFORMED, access_token="glpat-\n{token}"),
    _cond("token-nul", "token", MALFORMED, access_token="{token}\x00"),
    _cond("token-non-ascii", "token", MALFORMED, access_token="{token}é"),
    _cond("token-zero-width", "token", MALFORMED, access_token="{token}\u200b"),
    _cond("token-quoted", "token", ("AccessTokenInvalid",), access_token='"{token}"'),
    _cond("token-unknown", "token", ("AccessTokenInvalid",), access_token="glpat-unknown-to-gitlab-0000"),
    _cond("token-empty", "token", ("CredentialsMissing",), access_token=""),
    _cond("token-blank", "token", ("CredentialsMissing",), access_token=" \n\t"),
    _cond("token-read-only", "token", ("AccessTokenForbidden",), access_token=READ_ONLY_TOKEN),
    _cond(
        "creds-secret-absent", "token", ("CredentialsMissing",), {"gitlab": {"credentialsSecretRef": {"name": "nope"}}}
    ),
    _cond("creds-key-absent", "token", ("CredentialsMissing",), {"gitlab": {"credentialsSecretRef": {"key": "nope"}}}),
    # --- the CA bundle ------------------------------------------------------------------------------------------
    _cond("ca-text", "ca", ("CAInvalid",), ca="hello, I am a CA\n"),
    _cond("ca-garbled-pem", "ca", ("CAInvalid",), ca=PEM_GARBLED),
    _cond("ca-private-key", "ca", ("CAInvalid",), ca=PEM_KEY),
    _cond("ca-binary", "ca", ("CAInvalid",), ca="\x7fELF\x02\x01\x01"),
    _cond("ca-empty", "ca", ("CASecretMissing",), ca=""),
    _cond("ca-secret-absent", "ca", ("CASecretMissing",), {"gitlab": {"caSecretRef": {"name": "no-such-ca"}}}),
    # --- a URL that is not GitLab -------------------------------------------------------------------------------
    _cond("url-html-login", "url", NOT_GITLAB, url="impostor:html-login"),
    _cond("url-html-untyped", "url", NOT_GITLAB, url="impostor:html-no-type"),
    _cond("url-json-object", "url", NOT_GITLAB, url="impostor:json-object"),
    _cond("url-json-list", "url", NOT_GITLAB, url="impostor:json-list"),
    _cond("url-json-string", "url", NOT_GITLAB, url="impostor:json-string"),
    _cond("url-json-id-only", "url", NOT_GITLAB, url="impostor:json-id-only"),
    _cond("url-json-id-text", "url", NOT_GITLAB, url="impostor:json-id-text"),
    _cond("url-json-token-null", "url", NOT_GITLAB, url="impostor:json-token-null"),
    _cond("url-json-token-empty", "url", NOT_GITLAB, url="impostor:json-token-empty"),
    _cond("url-json-token-shape", "url", NOT_GITLAB, url="impostor:json-token-shape"),
    _cond("url-see-other", "url", NOT_GITLAB, url="impostor:see-other"),
    _cond("url-empty-200", "url", NOT_GITLAB, url="impostor:empty-200"),
    _cond("url-text-200", "url", NOT_GITLAB, url="impostor:text-200"),
    _cond("url-redirect-login", "url", NOT_GITLAB, url="impostor:redirect-login"),
    _cond("url-html-404", "url", ("GitLabNotFound",), url="impostor:html-404"),
    _cond("url-html-502", "url", ("GitLabUnavailable",), url="impostor:html-502"),
    _cond("url-json-500", "url", ("GitLabUnavailable",), url="impostor:json-500"),
    _cond("url-rate-limited", "url", ("GitLabRateLimited",), url="impostor:rate-limited"),
    _cond("url-teapot", "url", ("GitLabRejected",), url="impostor:teapot"),
    _cond("url-closed-port", "url", ("GitLabUnreachable",), url="closed-port"),
    _cond("url-subpath", "url", ("GitLabNotFound",), url="fake-subpath"),
    # --- GitLab refuses the scope -------------------------------------------------------------------------------
    _cond("project-unknown", "gitlab", REFUSED, {"projectId": CORPUS_UNKNOWN_ID}),
    _cond("project-not-member", "gitlab", REFUSED, {"projectId": CORPUS_PROJECT_NO_MEMBER}),
    _cond(
        "group-unknown",
        "gitlab",
        REFUSED,
        {"runnerType": "group_type", "projectId": DROP, "groupId": CORPUS_UNKNOWN_ID},
    ),
    _cond("instance-not-admin", "gitlab", REFUSED, {"runnerType": "instance_type", "projectId": DROP}),
    # --- the names the Runner's objects need are taken ----------------------------------------------------------
    _cond("foreign-statefulset", "conflict", ("NameConflict",), setup="foreign-statefulset"),
    _cond("foreign-token-secret", "conflict", ("NameConflict",), setup="foreign-token-secret"),
    # --- where the kubernetes executor's job pods would run, and as whom -----------------------------------------
    # An operator serving only the Runner's namespace (the e2e tier, `make chaos`) says NamespaceNotWatched about
    # any other first; one serving every namespace (the reconcile tier) says the first reason.
    _cond(
        "executor-ns-missing",
        "executor",
        ("NamespaceMissing", "NamespaceNotWatched"),
        {"config": {"kubernetes": {"namespace": "nope-ns"}}},
    ),
    _cond(
        "executor-ns-not-accepting",
        "executor",
        ("NamespaceNotAccepting", "NamespaceNotWatched"),
        {"config": {"kubernetes": {"namespace": CLOSED_NAMESPACE}}},
        setup="closed-namespace",
    ),
    _cond("manager-sa-missing", "executor", ("ServiceAccountMissing",), {"manager": {"serviceAccountName": "nope"}}),
    _cond(
        "namespace-per-job", "executor", ("ExecutorUnsupported",), {"config": {"kubernetes": {"namespacePerJob": True}}}
    ),
)

# The lean slice the e2e tier runs (one or two of each class; `make chaos` runs them all).
E2E = (
    "name-dot",
    "name-53",
    "tag-trailing-space",
    "tag-comma",
    "project-2e53",
    "renew-overflow",
    "token-bom",
    "ca-text",
    "url-html-login",
    "url-json-object",
    "url-json-token-null",
    "project-unknown",
    "manager-sa-missing",
    "namespace-per-job",
)


def by_id(id_: str) -> BadInput:
    return next(b for b in CORPUS if b.id == id_)


def seed(gitlab: Any) -> None:
    """What the corpus refers to in the fake GitLab (once): a project nobody of the tests is a member of, and a
    token with read_api only."""
    if not getattr(gitlab, "_corpus_seeded", False):
        stranger = gitlab.add_user("corpus-stranger")
        gitlab.add_project(CORPUS_PROJECT_NO_MEMBER, "not-yours", maintainers=[stranger])
        gitlab.add_access_token(READ_ONLY_TOKEN, stranger, scopes=["read_api"])
        gitlab._corpus_seeded = True
