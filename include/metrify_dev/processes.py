"""Background processes of the local stack (broker, fake APIs, Airflow components)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def alive(pid: int) -> bool:
    """Is `pid` running? Reaps it first if it is our own exited child (a zombie answers kill 0)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_published(path: Path) -> dict[str, Any] | None:
    """A service's published {pid, ...} state file, or None (and the file removed) if it is gone."""
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    if not alive(info["pid"]):
        path.unlink(missing_ok=True)
        return None
    return info


def spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session (it outlives the caller), output appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )


def spawn_until_published(
    argv: list[str],
    log_path: Path,
    published: Callable[[], dict[str, Any] | None],
    what: str,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Start a service that publishes {pid, ...} when ready; wait for its own publication."""
    process = spawn(argv, log_path, env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = published()
        if info and info["pid"] == process.pid:
            return info
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{what} did not start within {timeout:.0f} s; see {log_path}")


def terminate(pid: int, timeout: float = 10.0, group: bool = False) -> None:
    """SIGTERM (the process group with `group`), then SIGKILL after `timeout` seconds."""
    kill = os.killpg if group else os.kill
    try:
        kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        kill(pid, signal.SIGKILL)
