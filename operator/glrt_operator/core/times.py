"""Timestamps as Kubernetes and GitLab write them."""

from __future__ import annotations

from datetime import UTC, datetime

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # Kubernetes' timestamp form (RFC 3339, UTC, seconds)


def iso(value: datetime | None) -> str | None:
    """`value` in Kubernetes' form; None stays None."""
    return value.astimezone(UTC).strftime(TIME_FORMAT) if value else None


def now_iso() -> str:
    return datetime.now(UTC).strftime(TIME_FORMAT)


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 / ISO 8601 timestamp (a trailing `Z` included); None for None or empty."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
