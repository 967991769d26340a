"""Go-style durations (`72h`, `90m`, `1h30m`, `45s`), as Kubernetes users write them."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")


def parse_duration(value: str) -> timedelta:
    """The duration `value` stands for; ValueError when it is not one."""
    match = _DURATION.match(value)
    if not value or match is None:
        raise ValueError(f"{value!r} is not a duration; write it like 72h, 90m or 1h30m")
    hours, minutes, seconds = (int(match.group(g) or 0) for g in ("h", "m", "s"))
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)
