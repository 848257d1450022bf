"""Mechanical checks of the layering rules, so they cannot rot."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("profile", "loyalty", "engagement", "feedback")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def python_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service(service: str) -> None:
    others = tuple(f"services.{s}" for s in SERVICES if s != service)
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in python_files(ROOT / "services" / service)
        for module in imported_modules(path)
        if module.startswith(others)
    ]
    assert offenders == []


@pytest.mark.parametrize("service", SERVICES)
def test_services_never_touch_kafka_directly(service: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in python_files(ROOT / "services" / service)
        for module in imported_modules(path)
        if module.split(".")[0] == "aiokafka"
    ]
    assert offenders == []


def test_shared_depends_on_no_service() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in python_files(ROOT / "shared")
        for module in imported_modules(path)
        if module.split(".")[0] in ("services", "tools", "tests")
    ]
    assert offenders == []


def test_the_checker_sees_imports() -> None:
    """Guard against a checker that silently finds nothing."""
    modules = imported_modules(ROOT / "services" / "loyalty" / "main.py")
    assert "services.loyalty" in modules
    assert "shared.app" in modules
