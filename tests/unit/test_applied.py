"""Children applied only when they differ, status written only when it changes: the pure comparisons."""

from __future__ import annotations

import base64

from glrt_operator.core.applied import DESIRED_HASH, child_current, secret_current, stamped
from glrt_operator.core.ports import ChildObject, SecretObject
from glrt_operator.core.status import changes_anything


def secret(config: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "c", "namespace": "ci", "annotations": {"a": "1"}},
        "data": {"config.toml": base64.b64encode(config.encode()).decode()},
    }


def test_the_digest_follows_the_desired_state_and_leaves_secret_data_out() -> None:
    one, same = stamped(secret("x = 1")), stamped(secret("x = 1"))
    digest = one["metadata"]["annotations"][DESIRED_HASH]
    assert digest == same["metadata"]["annotations"][DESIRED_HASH]
    renamed = secret("x = 1")
    renamed["metadata"]["annotations"]["a"] = "2"  # type: ignore[index]
    assert stamped(renamed)["metadata"]["annotations"][DESIRED_HASH] != digest
    # Data is compared as read, never digested (the digest of a token would be published in an annotation).
    assert (
        stamped(secret("x = 2"))["metadata"]["annotations"][DESIRED_HASH]
        == one["metadata"]["annotations"][DESIRED_HASH]
    )
    assert "annotations" not in secret("x")["metadata"] or DESIRED_HASH not in secret("x")["metadata"]["annotations"]  # type: ignore[index]


def test_a_secret_is_current_only_with_the_same_digest_and_data() -> None:
    desired = stamped(secret("x = 1"))
    annotations = dict(desired["metadata"]["annotations"])
    assert secret_current(desired, SecretObject("c", annotations, {"config.toml": "x = 1"}))
    assert not secret_current(desired, SecretObject("c", annotations, {"config.toml": "x = 2"}))
    assert not secret_current(desired, SecretObject("c", {"a": "1"}, {"config.toml": "x = 1"}))
    assert not secret_current(desired, None)


def test_a_child_is_current_only_with_the_same_digest() -> None:
    desired = stamped({"kind": "StatefulSet", "metadata": {"name": "s"}, "spec": {"replicas": 1}})
    other = stamped({"kind": "StatefulSet", "metadata": {"name": "s"}, "spec": {"replicas": 2}})
    assert child_current(desired, ChildObject(annotations=dict(desired["metadata"]["annotations"])))
    assert not child_current(desired, ChildObject(annotations=dict(other["metadata"]["annotations"])))
    assert not child_current(desired, None)


def test_status_changes_ignore_volatile_keys_only() -> None:
    stored = {"replicas": [{"ordinal": 0, "managerStatus": "online", "contactedAt": "t1"}], "runnerId": 3}
    moved = {"replicas": [{"ordinal": 0, "managerStatus": "online", "contactedAt": "t2"}], "runnerId": 3}
    offline = {"replicas": [{"ordinal": 0, "managerStatus": "offline", "contactedAt": "t1"}]}
    volatile = frozenset({"contactedAt"})
    assert not changes_anything(moved, stored, volatile)
    assert changes_anything(moved, stored, frozenset())
    assert changes_anything(offline, stored, volatile)
    assert changes_anything({"runnerId": 4}, stored, volatile)
    assert changes_anything({"tokenExpiresAt": "x"}, stored, volatile)
