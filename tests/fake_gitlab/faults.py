"""Fault injection rules for the fake GitLab.

A :class:`FaultSet` is an ordered list of :class:`Fault` rules; for each API request the first rule that matches
(method, path regex, not yet used up) fires. Faults never apply to the control API under ``/-/fake/``.
The 429 shapes follow REST status codes and rate limits. The database-migration
back-off of rate limits is ``Fault(kind="rate_limit_app", message="Executing database migrations. Please retry
later.", retry_after=60)``.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field, fields
from typing import Any

FAULT_KINDS = (
    "latency",  # wait `seconds`, then handle normally
    "status",  # answer `status` with {"message": ...}, request not processed
    "rate_limit_rack",  # Rack::Attack 429: text/plain "Retry later\n", RateLimit-* and Retry-After (rate limits)
    "rate_limit_app",  # application 429: JSON message and Retry-After (rate limits)
    "drop",  # read the request, close the connection without a response; request not processed
    "drop_after_commit",  # process the request fully, then close without sending the response
    "hold_before_commit",  # wait up to `seconds` before processing; a client gone meanwhile: never processed
    "hold_after_commit",  # process the request fully, then wait `seconds` before sending the response
    "garble_after_commit",  # process the request fully; a 2xx answer is then replaced as `garble` says
)

# What a proxy or a broken GitLab may answer after the request was processed (`garble_after_commit`):
GARBLES = (
    "html",  # 200 text/html, a proxy's error page
    "empty",  # 200 application/json with an empty body
    "text",  # 200 text/plain "OK"
    "token-null",  # GitLab's status and JSON, its `token` null
    "token-empty",  # ... its `token` ""
    "token-number",  # ... its `token` a number
    "token-shape",  # ... its `token` a string of no GitLab token's shape
    "no-token",  # ... without `token`
    "see-other",  # 303 See Other to a web page, as a web front end answers a processed POST
)

APP_RATE_LIMIT_MESSAGE = "This endpoint has been requested too many times. Try again later."
DEFAULT_RETRY_AFTER = 60


@dataclass
class Fault:
    """One fault rule.

    ``method``/``path`` select requests (``None`` = any; ``path`` is a regex searched in the request path, e.g.
    ``r"^/api/v4/user/runners$"``). ``count`` limits how often it fires (``None`` = forever); ``skip`` lets that
    many matching requests through first. ``hits`` counts how often it fired.
    """

    method: str | None = None
    path: str | None = None
    kind: str = "status"
    status: int = 503
    seconds: float = 0.0
    retry_after: int | None = None  # Retry-After seconds; 429 kinds default to GitLab's 60 (REST status codes)
    count: int | None = None
    message: str | None = None
    skip: int = 0
    rate: float | None = None  # fire for this fraction of the matching requests, at random (None: every one)
    garble: str = "html"  # garble_after_commit: one of GARBLES
    hits: int = 0
    seen: int = 0  # matching requests, including the skipped ones
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        if self.garble not in GARBLES:
            raise ValueError(f"unknown garble {self.garble!r}; expected one of {', '.join(GARBLES)}")
        if self.method is not None:
            self.method = self.method.upper()
        self._regex = re.compile(self.path) if self.path is not None else None

    @property
    def retry_after_seconds(self) -> int:
        return DEFAULT_RETRY_AFTER if self.retry_after is None else self.retry_after

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.hits >= self.count

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method.upper():
            return False
        return self._regex is None or self._regex.search(path) is not None

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        """Build from JSON (control API); unknown keys raise ``ValueError``."""
        allowed = {f.name for f in fields(cls) if f.init and f.name not in ("hits", "seen")}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(unknown)}")
        return cls(**data)


class FaultSet:
    """Thread-safe ordered fault rules; first match wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._rules.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[Fault]:
        with self._lock:
            return list(self._rules)

    def __len__(self) -> int:
        with self._lock:
            return len(self._rules)

    def match(self, method: str, path: str) -> Fault | None:
        """The rule that fires for this request (its ``hits`` already counted), or ``None``."""
        with self._lock:
            for rule in self._rules:
                if rule.exhausted or not rule.matches(method, path):
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    continue
                if rule.rate is not None and random.random() >= rule.rate:
                    continue
                rule.hits += 1
                return rule
        return None
