"""Deploy target of the embedded default: each version runs as a local process.

A new version is started beside the old one on a free port and becomes current only once its
health endpoint answers; the old one is stopped after the switch. If the new one never gets
healthy it is stopped and the old one keeps serving, untouched. A deployed process runs deliverable
code: it gets a minimal environment plus what its launch declares, never the platform's own, and
its folder and log are private to the platform's user.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import dagster as dg

from platform_assets.sandbox import minimal_env, platform_secrets, redact, secret_values_of
from platform_assets.settings import state_dir
from resources.deploy_lock import file_lock
from resources.deploy_target import DeployFailed, ProcessLaunch, free_port, probe

CURRENT = "current.json"
OWNER_ENV = "PLATFORM_DEPLOY_SLOT"


class LocalProcessTarget(dg.ConfigurableResource):
    """Runs deployments of one environment under `<state>/deployments/<environment>/`."""

    environment: str
    root: str | None = None

    def base(self) -> Path:
        return Path(self.root) if self.root else state_dir() / "deployments" / self.environment

    def slot(self, deliverable: str) -> Path:
        return _private_dir(self.base() / deliverable)

    def workspace(self, deliverable: str, version: str) -> Path:
        """A folder private to this environment and version (its isolated runtime lives here)."""
        return _private_dir(self.slot(deliverable) / version)

    def lock(self, deliverable: str, holder: str,
             log: Callable[[str], None] | None = None) -> contextlib.AbstractContextManager[None]:
        """Held by a whole deploy step of `deliverable` here (resources/deploy_lock.py)."""
        return file_lock(self.slot(deliverable) / ".deploy.lock", holder, log)

    def current(self, deliverable: str) -> dict[str, Any] | None:
        path = self.base() / deliverable / CURRENT
        return json.loads(path.read_text()) if path.exists() else None

    def deploy(self, launch: ProcessLaunch) -> dict[str, Any]:
        slot = self.slot(launch.deliverable)
        with _locked(slot / ".lock"):
            previous = self.current(launch.deliverable)
            config = launch.config_digest()
            if (previous and previous["version"] == launch.version and previous.get("config") == config
                    and _alive(previous["pid"])):
                healthy, _ = probe(previous["health_url"])
                if healthy:
                    return {**previous, "unchanged": True}
            started = {**_start(launch, self.workspace(launch.deliverable, launch.version), str(slot)),
                       "config": config}
            _write_json(slot / CURRENT, started)
            if previous and previous["pid"] != started["pid"]:
                stop_process(previous["pid"], str(slot))
            return {**started, "previous_version": previous["version"] if previous else None}

    def stop(self, deliverable: str) -> bool:
        """Stop what runs for `deliverable` here and forget it; True if something was running."""
        slot = self.base() / deliverable
        current = self.current(deliverable)
        if current is None:
            return False
        with _locked(slot / ".lock"):
            stop_process(current["pid"], str(slot))
            (slot / CURRENT).unlink(missing_ok=True)
        return True

    def deployed_names(self) -> list[str]:
        base = self.base()
        return sorted(p.parent.name for p in base.glob(f"*/{CURRENT}")) if base.exists() else []


def _start(launch: ProcessLaunch, workspace: Path, owner: str) -> dict[str, Any]:
    """Start `launch` and wait until healthy; on failure stop it and raise DeployFailed."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    health_url = url + launch.health_path
    log_path = workspace / f"process-{port}.log"
    command = [part.replace("{port}", str(port)) for part in launch.command]
    env = minimal_env(workspace / "home", {**launch.env, **launch.secret_env, OWNER_ENV: owner})
    with _private_log(log_path) as log:
        process = subprocess.Popen(
            command,
            cwd=launch.workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + launch.startup_timeout_s
    detail = "not started"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            detail = f"process exited with code {process.returncode}"
            break
        healthy, detail = probe(health_url, timeout_s=1.0)
        if healthy:
            return {
                "version": launch.version,
                "pid": process.pid,
                "port": port,
                "url": url,
                "health_url": health_url,
                "log": str(log_path),
                "command": command,
                "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        time.sleep(0.2)
    else:
        detail = f"not healthy within {launch.startup_timeout_s:.0f}s ({detail})"
    stop_process(process.pid, owner)
    hidden = [*launch.secret_env.values(), *secret_values_of(launch.env), *platform_secrets()]
    raise DeployFailed(
        f"{launch.deliverable} {launch.version} did not start healthy: {detail}",
        {"attempted_version": launch.version, "log": str(log_path), "log_tail": redact(_tail(log_path), hidden)},
    )


def stop_process(pid: int, owner: str, grace_s: float = 10.0) -> None:
    """Stop the process group `pid` if it is still ours (pids are reused: check its environment)."""
    if not _alive(pid) or f"{OWNER_ENV}={owner}" not in _environ(pid):
        _reap(pid)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _alive(pid):
        _reap(pid)
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    _reap(pid)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _environ(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _reap(pid: int) -> None:
    """Collect the exit status if `pid` is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _private_dir(path: Path) -> Path:
    """A folder only the platform's user may enter: it holds logs and environments of deployed code."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _private_log(path: Path) -> BinaryIO:
    """The process's log, readable by the platform's user only (it may print what it was given)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(descriptor, 0o600)
    return os.fdopen(descriptor, "ab")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as tmp:
        json.dump(data, tmp, indent=2)
    os.replace(tmp.name, path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One deploy per (environment, deliverable) at a time, across processes."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
