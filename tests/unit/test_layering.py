"""The package's layering, as the layout promises it: resources are peers (one never imports another), the pure
planners and builders import no HTTP or Kubernetes client, and modules and functions stay small."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "glrt_operator"
RESOURCES = ("runners", "deploytokens", "connections")


def imports_of(module: Path) -> set[str]:
    """The modules `module` imports, relative ones resolved against the package (`glrt_operator.x.y`)."""
    parts = ["glrt_operator", *module.relative_to(PACKAGE).with_suffix("").parts]
    found: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = parts[: len(parts) - node.level] if node.level else []
            found.add(".".join([*base, *(node.module.split(".") if node.module else [])]))
    return found


@pytest.mark.parametrize("resource", RESOURCES)
def test_a_resource_imports_no_other_resource(resource: str) -> None:
    others = {f"glrt_operator.{r}" for r in RESOURCES if r != resource}
    for module in (PACKAGE / resource).rglob("*.py"):
        bad = {i for i in imports_of(module) if any(i == o or i.startswith(o + ".") for o in others)}
        assert not bad, f"{module.relative_to(PACKAGE)} imports {sorted(bad)}"


def test_core_imports_no_resource_adapter_or_controller() -> None:
    banned = tuple(f"glrt_operator.{p}" for p in (*RESOURCES, "adapters", "controller"))
    for module in (PACKAGE / "core").rglob("*.py"):
        bad = {i for i in imports_of(module) if i.startswith(banned)}
        assert not bad, f"{module.relative_to(PACKAGE)} imports {sorted(bad)}"


@pytest.mark.parametrize(
    "module",
    [
        "glrt_operator.deploytokens.planner",
        "glrt_operator.deploytokens.builders",
        "glrt_operator.runners.rotation",
        "glrt_operator.runners.replicas",
        "glrt_operator.runners.attributes",
        "glrt_operator.runners.builders",
    ],
)
def test_pure_logic_loads_no_http_or_kubernetes_client(module: str) -> None:
    probe = f"import sys, {module}; print(sorted(m for m in ('httpx', 'kubernetes', 'kopf') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]", f"{module} loads {loaded.strip()}"


def test_no_module_over_400_lines_and_no_function_over_60() -> None:
    for module in PACKAGE.rglob("*.py"):
        source = module.read_text()
        assert source.count("\n") <= 400, module.relative_to(PACKAGE)
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                assert length <= 60, f"{module.relative_to(PACKAGE)}: {node.name} has {length} lines"
