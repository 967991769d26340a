"""The catalogue of condition and Event reasons and the troubleshooting page name the same reasons, no more."""

from __future__ import annotations

import re
from pathlib import Path

from glrt_operator.core.reasons import EventReason, Reason

PAGE = Path(__file__).resolve().parents[2] / "docs" / "operations" / "troubleshooting.md"


def table_names(heading: str) -> set[str]:
    """The backticked names in the first column of the table under `## heading`."""
    section = PAGE.read_text().split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Za-z]+)`", row.split("|")[1])}


def test_every_condition_reason_is_documented_and_nothing_else() -> None:
    assert table_names("Conditions") == {r.value for r in Reason}


def test_every_event_reason_is_documented_and_nothing_else() -> None:
    assert table_names("Events") == {r.value for r in EventReason}


def test_no_reason_is_a_literal_outside_the_catalogue() -> None:
    """Code names reasons through the enums: a reason written as a string literal would bypass the catalogue."""
    names = {r.value for r in Reason} | {r.value for r in EventReason}
    package = Path(__file__).resolve().parents[2] / "operator" / "glrt_operator"
    for module in package.rglob("*.py"):
        if module.name == "reasons.py":
            continue
        code = re.sub(r"__all__ = \[[^\]]*\]", "", module.read_text())  # exported names, not reasons
        literals = set(re.findall(r'"([A-Z][A-Za-z]+)"', code))
        assert not literals & names, f"{module.relative_to(package)}: {sorted(literals & names)}"
