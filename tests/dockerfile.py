"""Reading the Dockerfile and .dockerignore, for the tests that check the image without a Docker
engine (tests/unit/test_deployment_files.py, tests/unit/test_image_install.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path, PurePosixPath

from tests import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(instruction, arguments) of each step, continuation lines joined, comments left out."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    steps = []
    for line in text.splitlines():
        if line.strip():
            op, _, args = line.strip().partition(" ")
            steps.append((op.upper(), args.strip()))
    return steps


def env_assignments(args: str) -> dict[str, str]:
    """The variables of one ENV instruction (`ENV A=1 B="two words"`)."""
    words = shlex.split(args)
    assert all("=" in word for word in words), f"ENV in the legacy `ENV key value` form: {args}"
    return dict(word.split("=", 1) for word in words)


def env(path: Path = DOCKERFILE) -> dict[str, str]:
    """Every variable the Dockerfile's ENV instructions set."""
    values: dict[str, str] = {}
    for op, args in instructions(path):
        if op == "ENV":
            values.update(env_assignments(args))
    return values


def copy_arguments(args: str) -> tuple[list[str], str]:
    """The sources and the destination of a COPY instruction (flags such as --chown dropped)."""
    words = [word for word in shlex.split(args) if not word.startswith("--")]
    return words[:-1], words[-1]


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match plus `**`) as a regular expression."""
    out = ""
    for part in re.split(r"(\*\*/|\*\*|\*|\?)", pattern.strip("/")):
        out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
    return re.compile(out)


def ignore_patterns(path: Path = DOCKERIGNORE) -> list[re.Pattern[str]]:
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert not [line for line in lines if line.startswith("!")], "exceptions (!) are not modelled here"
    return [_pattern(line) for line in lines]


def ignored(relative: PurePosixPath, patterns: list[re.Pattern[str]]) -> bool:
    """Whether the build context leaves out this path (relative to the context) or a parent."""
    candidates = [relative, *list(relative.parents)[:-1]]
    return any(p.fullmatch(str(candidate)) for p in patterns for candidate in candidates)
