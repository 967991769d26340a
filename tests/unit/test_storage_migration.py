"""The storage migration at start (controller.startup.migrate_stored_objects): both CRDs, to core.api.VERSION, and
a refusal (a missing permission) is logged without stopping the operator. The migration itself runs against a real
API server in tests/e2e/test_api_versions.py."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from glrt_operator.adapters.kube_storage import StorageMigration
from glrt_operator.controller import startup
from glrt_operator.core import api


def test_migrates_every_kind_and_survives_a_refusal(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[dict[str, Any]] = []

    def migrate(client: object, **target: Any) -> StorageMigration:
        seen.append(target)
        if target["plural"] == "runners":
            raise ApiException(status=403, reason="Forbidden")
        return StorageMigration(f"{target['plural']}.{target['group']}", ("v1alpha1", api.VERSION), 4, done=True)

    monkeypatch.setattr(startup, "migrate_storage", migrate)
    with caplog.at_level(logging.INFO, logger="glrt_operator.startup"):
        startup.migrate_stored_objects(object())  # type: ignore[arg-type]
    assert seen == [{"group": api.GROUP, "plural": k.plural, "version": api.VERSION} for k in api.VERSIONED_KINDS]
    messages = [r.getMessage() for r in caplog.records]
    assert any("cannot migrate runners.glrt.dev to v1beta1 (403 Forbidden)" in m for m in messages), messages
    assert any(
        "deploytokens.glrt.dev: 4 objects rewritten, storedVersions ['v1alpha1', 'v1beta1'] -> ['v1beta1']" in m
        for m in messages
    ), messages


def test_nothing_logged_once_migrated(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(
        startup, "migrate_storage", lambda client, **t: StorageMigration("x", (api.VERSION,), 0, done=True)
    )
    with caplog.at_level(logging.INFO, logger="glrt_operator.startup"):
        startup.migrate_stored_objects(object())  # type: ignore[arg-type]
    assert not caplog.records


def test_any_failure_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def unreadable(client: object, **target: Any) -> StorageMigration:
        raise ValueError("Invalid value for `conditions`, must not be `None`")

    monkeypatch.setattr(startup, "migrate_storage", unreadable)
    with caplog.at_level(logging.WARNING, logger="glrt_operator.startup"):
        startup.migrate_stored_objects(object())  # type: ignore[arg-type]
    assert len(caplog.records) == len(api.VERSIONED_KINDS)
    assert "retried at the next start" in caplog.records[0].getMessage()
