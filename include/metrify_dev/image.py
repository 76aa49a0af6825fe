"""The Docker image, built step by step from the Dockerfile without a Docker engine.

The Dockerfile's instructions are read, not retyped, and replayed in a folder standing in for the
image's `/`: every `/opt/...` path becomes `<root>/opt/...`. Used by the production-shaped run
(`metrify_dev.production`, whose Airflow processes run from the environment built here) and by
`tests/unit/test_image_install.py`.

* `FROM`: a fresh virtual environment (`uv venv`) of this Python, which must be the tag's, with
  `AIRFLOW_HOME=/opt/airflow`, the official image's.
* `COPY` copies from the checkout what the build context holds (`.dockerignore` applied).
* `ENV` sets the variables every later step runs with (and `Image.env` keeps them).
* `RUN pip install ...` runs as `uv pip install --python <venv> ...`: the pinned requirements come
  from uv's cache (hard links, about a second; the package index only for a pin the cache
  lacks, and never with `offline=True`), `--no-cache-dir` is dropped (it only keeps Docker's layer small),
  and the package's build backend (setuptools, pinned in requirements.txt) is the one installed
  in the environment rather than an isolated build environment's. `--no-deps /opt/metrify` is
  a real, non-editable install into the environment's site-packages.
* Every other `RUN` runs as written with `/bin/sh -c` (the dbt manifest build).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

from metrify_dev import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
# What the official apache/airflow image sets for every step after FROM.
BASE_IMAGE_ENV = {"AIRFLOW_HOME": "/opt/airflow"}
# Offline: a step that reached for the network would fail at once instead of downloading.
OFFLINE_ENV = {
    "UV_OFFLINE": "1",
    "PIP_NO_INDEX": "1",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
}

# What a download of a pin the cache lacks takes from this process's environment.
NETWORK_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR")


# ---------------------------------------------------------------------------------------------
# Reading the Dockerfile and .dockerignore


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
    legacy = [word for word in words if "=" not in word]
    if legacy:
        raise ValueError(f"Dockerfile: ENV in the legacy `ENV key value` form: ENV {args}")
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
    """The build context's exclusions; exceptions (`!`) are refused, not modelled."""
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    exceptions = [line for line in lines if line.startswith("!")]
    if exceptions:
        raise ValueError(f"{path}: exceptions (!) are not modelled here: {exceptions}")
    return [_pattern(line) for line in lines]


def ignored(relative: PurePosixPath, patterns: list[re.Pattern[str]]) -> bool:
    """Whether the build context leaves out this path (relative to the context) or a parent."""
    candidates = [relative, *list(relative.parents)[:-1]]
    return any(p.fullmatch(str(candidate)) for p in patterns for candidate in candidates)


def remap(text: str, root: Path) -> str:
    """`/opt/...` in a value or command -> `<root>/opt/...`."""
    return re.sub(r"(?<![\w./-])/opt/", f"{root}/opt/", text)


def uv_executable() -> str:
    """uv, beside this interpreter (the Makefile installs it into .venv) or on PATH."""
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        raise RuntimeError(f"uv not found beside {sys.executable} nor on PATH: `make` installs it into .venv")
    return found


def uv_cache_dir() -> str:
    """uv's cache folder as this process's environment has it."""
    done = subprocess.run([uv_executable(), "cache", "dir"], capture_output=True, text=True, check=True)
    return done.stdout.strip()


# ---------------------------------------------------------------------------------------------
# Replaying it


class Image:
    """The Dockerfile replayed under `root`; its Python environment is `root/venv`."""

    def __init__(self, root: Path, offline: bool = False) -> None:
        self.root = root
        self.venv = root / "venv"
        self.offline = offline
        self.env: dict[str, str] = {}
        self.log: list[str] = []
        self.copied_manifests: list[Path] = []  # dbt manifests the build context brought along

    def path(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    def remap(self, text: str) -> str:
        return remap(text, self.root)

    def executable(self, name: str) -> str:
        """A command of the image's environment (`airflow`, `python`)."""
        return str(self.venv / "bin" / name)

    def step_env(self) -> dict[str, str]:
        """What a RUN step (and a probe of the built image) runs with: nothing of this process's
        environment but the locale, no PYTHONPATH, the image's ENV."""
        return {
            "PATH": f"{self.venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(self.root / "home" / "airflow"),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            **(OFFLINE_ENV if self.offline else {}),
            **self.env,
        }

    def build(self, path: Path = DOCKERFILE) -> Image:
        """Every instruction of the Dockerfile, in order."""
        handlers = {"FROM": self.from_, "COPY": self.copy, "ENV": self.env_, "RUN": self.run}
        for op, args in instructions(path):
            if op == "USER":
                continue
            if op not in handlers:
                raise ValueError(f"{path}: the instruction {op} is not modelled by metrify_dev.image")
            handlers[op](args)
        return self

    # --- the instructions ---------------------------------------------------------------------

    def from_(self, args: str) -> None:
        tag = re.fullmatch(r"apache/airflow:[\w.]+-python(\d+)\.(\d+)", args)
        if not tag:
            raise ValueError(f"Dockerfile: not the official Airflow image: FROM {args}")
        if sys.version_info[:2] != (int(tag[1]), int(tag[2])):
            raise RuntimeError(f"the image runs Python {tag[1]}.{tag[2]}, this is {sys.version.split()[0]}")
        self.root.mkdir(parents=True, exist_ok=True)
        self._timed(f"FROM {args}", [uv_executable(), "venv", "--quiet", "--python", sys.executable, str(self.venv)])
        self.env.update({k: self.remap(v) for k, v in BASE_IMAGE_ENV.items()})
        self.path("/opt/airflow").mkdir(parents=True, exist_ok=True)

    def copy(self, args: str) -> None:
        sources, dest = copy_arguments(args)
        patterns = ignore_patterns()

        def ignore(folder: str, names: list[str]) -> list[str]:
            relative = PurePosixPath(Path(folder).relative_to(REPO_ROOT).as_posix())
            return [name for name in names if ignored(relative / name, patterns)]

        for source in sources:
            origin, target = REPO_ROOT / source, self.path(dest)
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=ignore, dirs_exist_ok=True)
                self.copied_manifests += target.rglob("manifest.json")
            else:
                target = target / origin.name if dest.endswith("/") else target
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)

    def env_(self, args: str) -> None:
        self.env.update({k: self.remap(v) for k, v in env_assignments(args).items()})

    def run(self, args: str) -> None:
        command = self.remap(args)
        if command.startswith("pip install "):
            words = [w for w in shlex.split(command)[2:] if w != "--no-cache-dir"]
            argv = [uv_executable(), "pip", "install", "--quiet", "--python", self.executable("python"), *words]
            try:  # from uv's cache first: no index is asked while the cache holds every pin
                self._timed(f"RUN {args}", argv, extra={"UV_NO_BUILD_ISOLATION": "1", "UV_OFFLINE": "1"})
            except RuntimeError:
                if self.offline:
                    raise
                network = {k: v for k, v in os.environ.items() if k.upper() in NETWORK_VARIABLES}
                self._timed(f"RUN {args} (from the index)", argv, extra={"UV_NO_BUILD_ISOLATION": "1", **network})
        else:
            self._timed(f"RUN {args}", ["/bin/sh", "-c", command])

    def _timed(self, what: str, argv: list[str], extra: dict[str, str] | None = None) -> None:
        started = time.perf_counter()
        env = {**self.step_env(), **(extra or {})}
        if argv[0] == uv_executable():  # uv's cache and settings of this process (HOME differs)
            env.update({k: v for k, v in os.environ.items() if k.startswith("UV_") and k not in env})
            env["UV_CACHE_DIR"] = uv_cache_dir()
        cwd = self.path("/opt/airflow") if self.path("/opt/airflow").exists() else self.root
        done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
        self.log.append(f"{what}: {time.perf_counter() - started:.1f} s")
        if done.returncode != 0:
            raise RuntimeError(f"Dockerfile step failed: {what}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
