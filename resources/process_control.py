"""Processes the local deploy target starts (deployed versions, the gateway) and how it stops them.

They run in a session of their own, so they outlive the step or sensor that started them, and
carry `PLATFORM_DEPLOY_SLOT=<owner>` in their environment: pids are reused, so the platform only
signals a process whose environment says it is the owner's, and tells a live process from a new
one with the same pid by its start time (psutil's `create_time`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO

OWNER_ENV = "PLATFORM_DEPLOY_SLOT"


def spawn(command: list[str], cwd: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start `command` in its own session, its output appended to a log only the platform's user reads."""
    with private_log(log_path) as log:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def create_time(pid: int) -> float | None:
    """When process `pid` started (None if there is none): with the pid, it names one process."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def alive(pid: int, created: float | None = None) -> bool:
    """Whether `pid` runs (a zombie does not), and is the process that started at `created` if given."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            _reap(pid)
            return False
        return created is None or abs(process.create_time() - created) < 0.05
    except psutil.Error:
        return False


def owned(pid: int, owner: str) -> bool:
    import psutil

    try:
        return psutil.Process(pid).environ().get(OWNER_ENV) == owner
    except psutil.Error:
        return False


def stop_process(pid: int, owner: str, grace_s: float = 10.0) -> None:
    """Stop the process group `pid` if it is still `owner`'s: SIGTERM (uvicorn then finishes the
    requests it has), SIGKILL after `grace_s`."""
    if not alive(pid) or not owned(pid, owner):
        _reap(pid)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and alive(pid):
        _reap(pid)
        time.sleep(0.05)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0  # SIGKILL is asynchronous: return once it took effect
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.05)
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect the exit status if `pid` is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def log_tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def private_dir(path: Path) -> Path:
    """A folder only the platform's user may enter: it holds logs and environments of deployed code."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def private_log(path: Path) -> BinaryIO:
    """A process's log, readable by the platform's user only (it may print what it was given)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(descriptor, 0o600)
    return os.fdopen(descriptor, "ab")


def write_json(path: Path, data: dict[str, Any], mode: int = 0o600) -> None:
    """Replace `path` in one rename, so a reader sees the old or the new content, never a part."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as tmp:
        json.dump(data, tmp, indent=2)
    os.chmod(tmp.name, mode)
    os.replace(tmp.name, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
