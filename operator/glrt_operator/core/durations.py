"""Go-style durations (`72h`, `90m`, `1h30m`, `45s`), as Kubernetes users write them."""

from __future__ import annotations

import re
from datetime import timedelta

MAX_SECONDS = 10 * 366 * 24 * 3600  # far beyond any token lifetime; keeps every datetime sum in range
_DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")


def parse_duration(value: str) -> timedelta:
    """The duration `value` stands for; ValueError when it is not one."""
    match = _DURATION.match(value)
    if not value or match is None:
        raise ValueError(f"{value!r} is not a duration; write it like 72h, 90m or 1h30m")
    hours, minutes, seconds = (int(match.group(g) or 0) for g in ("h", "m", "s"))
    total = hours * 3600 + minutes * 60 + seconds
    if total > MAX_SECONDS:
        raise ValueError(f"{value!r} is longer than {MAX_SECONDS // 3600}h; write a duration of at most 10 years")
    return timedelta(seconds=total)
