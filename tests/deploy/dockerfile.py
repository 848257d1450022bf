"""A small reader for deploy/docker/Dockerfile: stages and their instructions."""

from __future__ import annotations

import functools
import json
import shlex
from dataclasses import dataclass, field

from tests.deploy.manifests import DOCKERFILE


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"stage {self.name} has no {keyword}"
        return found[-1]

    def cmd(self) -> list[str]:
        command: list[str] = json.loads(self.last("CMD"))
        return command

    def copied_sources(self) -> list[str]:
        """What the stage copies from the build context (not from other stages)."""
        sources: list[str] = []
        for args in self.all("COPY"):
            if "--from=" in args:
                continue
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            sources += words[:-1]
        return sources


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with continuation lines joined and comments dropped."""
    joined = text.replace("\\\n", " ")
    result = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, args = stripped.partition(" ")
            result.append((keyword.upper(), args.strip()))
    return result


@functools.cache
def stages() -> dict[str, Stage]:
    parsed = instructions(DOCKERFILE.read_text())
    args = dict(a.split("=", 1) for k, a in parsed if k == "ARG" and "=" in a)
    found: dict[str, Stage] = {}
    current: Stage | None = None
    for keyword, rest in parsed:
        if keyword == "FROM":
            words = rest.split()
            base = words[0]
            for name, value in args.items():
                base = base.replace("${" + name + "}", value)
            current = Stage(name=words[-1] if len(words) == 3 else "", base=base)
            found[current.name] = current
        elif current is not None:
            current.instructions.append((keyword, rest))
    return found


def option(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]
