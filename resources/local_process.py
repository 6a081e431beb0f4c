"""Deploy target of the embedded default: each version runs as a local process behind the
environment's gateway.

A new version is started beside the old one on a free port and becomes current only once its
health endpoint answers; then the gateway (resources/gateway.py) routes the deliverable's stable
URL, `http://127.0.0.1:<gateway port>/<name>`, to it, waits for the requests in flight to the old
one, and the old one is stopped. If the new one never gets healthy it is stopped and the old one
keeps serving, untouched. A deployed process runs deliverable code: it gets a minimal environment
plus what its launch declares, never the platform's own, and its folder and log are private to
the platform's user. What a restart needs (the launch, secrets' values included) is kept in the
slot's `launch.json`, 0600 in a 0700 folder like the local secret store's files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from platform_assets.sandbox import minimal_env, platform_secrets, redact, secret_values_of
from platform_assets.settings import state_dir
from resources.deploy_lock import file_lock
from resources.deploy_target import DeployFailed, ProcessLaunch, free_port, probe
from resources.gateway import LocalGateway
from resources.process_control import (
    OWNER_ENV,
    alive,
    create_time,
    log_tail,
    private_dir,
    read_json,
    spawn,
    stop_process,
    write_json,
)

CURRENT = "current.json"
LAUNCH = "launch.json"


class LocalProcessTarget(dg.ConfigurableResource):
    """Runs deployments of one environment under `<state>/deployments/<environment>/`."""

    environment: str
    root: str | None = None
    gateway_port: int | None = None
    drain_timeout_s: float = 30.0

    def base(self) -> Path:
        return Path(self.root) if self.root else state_dir() / "deployments" / self.environment

    def gateway(self) -> LocalGateway:
        return LocalGateway(self.base(), self.gateway_port)

    def slot(self, deliverable: str) -> Path:
        return private_dir(self.base() / deliverable)

    def workspace(self, deliverable: str, version: str) -> Path:
        """A folder private to this environment and version (its isolated runtime lives here)."""
        return private_dir(self.slot(deliverable) / version)

    def lock(self, deliverable: str, holder: str,
             log: Callable[[str], None] | None = None) -> contextlib.AbstractContextManager[None]:
        """Held by a whole deploy step of `deliverable` here (resources/deploy_lock.py)."""
        return file_lock(self.slot(deliverable) / ".deploy.lock", holder, log)

    def current(self, deliverable: str) -> dict[str, Any] | None:
        return read_json(self.base() / deliverable / CURRENT)

    def deploy(self, launch: ProcessLaunch) -> dict[str, Any]:
        slot = self.slot(launch.deliverable)
        gateway = self.gateway()
        with _locked(slot / ".lock"):
            previous = self.current(launch.deliverable)
            config = launch.config_digest()
            gateway.ensure()
            if (previous and previous["version"] == launch.version and previous.get("config") == config
                    and "direct_url" in previous and alive(previous["pid"], previous.get("created"))):
                healthy, _ = probe(previous["health_url"])
                if healthy:
                    return {**previous, "unchanged": True}
            process, started = _spawn(launch, self.workspace(launch.deliverable, launch.version), str(slot))
            try:
                _wait_healthy(launch, process, started, str(slot))
            except DeployFailed:
                self.stop_gateway_if_idle()  # a first deploy that failed leaves no gateway behind
                raise
            now = datetime.now(UTC).isoformat(timespec="seconds")
            started.update(config=config, url=gateway.url(launch.deliverable), restarts=0, deployed_at=now)
            write_json(slot / LAUNCH, _launch_record(launch))
            write_json(slot / CURRENT, started)
            gateway.reroute(launch.deliverable)
            if previous and previous["pid"] != started["pid"]:
                gateway.drain(previous.get("direct_url", previous["url"]), self.drain_timeout_s)
                stop_process(previous["pid"], str(slot))
            return {**started, "previous_version": previous["version"] if previous else None}

    def restart(self, deliverable: str, dead_pid: int) -> dict[str, Any] | None:
        """Start the current version again after its process `dead_pid` died, on a new port, without
        waiting for it to get healthy (the runtime sensor looks on its next tick). The new current
        record; None when there is nothing to restart now (a deploy holds the slot, or replaced that
        process meanwhile); DeployFailed when the launch is not kept (redeploy it)."""
        slot = self.base() / deliverable
        try:
            with _locked(slot / ".lock", wait=False):
                current, launch = self.current(deliverable), _launch_of(read_json(slot / LAUNCH))
                if current is None or current["pid"] != dead_pid or alive(dead_pid, current.get("created")):
                    return None
                if launch is None:
                    raise DeployFailed(f"{slot / LAUNCH} is missing, so {deliverable} cannot be restarted; "
                                       "deploy it again")
                _, started = _spawn(launch, self.workspace(deliverable, launch.version), str(slot))
                restarted = {**current, **started, "restarts": int(current.get("restarts", 0)) + 1}
                write_json(slot / CURRENT, restarted)
        except BlockingIOError:
            return None
        self.gateway().reroute(deliverable)
        return restarted

    def log_tail(self, deliverable: str, lines: int = 20) -> str:
        """The last lines of the current process's log, its secrets hidden."""
        current, launch = self.current(deliverable), _launch_of(read_json(self.base() / deliverable / LAUNCH))
        if current is None:
            return ""
        return redact(log_tail(Path(current["log"]), lines), _hidden(launch) if launch else platform_secrets())

    def stop(self, deliverable: str) -> bool:
        """Stop what runs for `deliverable` here and forget it (its route first, so the gateway sends
        it nothing more); the gateway stops with the last deployment. True if something ran."""
        slot = self.base() / deliverable
        current = self.current(deliverable)
        if current is None:
            return False
        with _locked(slot / ".lock"):
            (slot / CURRENT).unlink(missing_ok=True)
            self.gateway().reroute(deliverable)
            stop_process(current["pid"], str(slot))
            (slot / LAUNCH).unlink(missing_ok=True)
        self.stop_gateway_if_idle()
        return True

    def stop_gateway_if_idle(self) -> bool:
        return not self.deployed_names() and self.gateway().stop()

    def deployed_names(self) -> list[str]:
        base = self.base()
        return sorted(p.parent.name for p in base.glob(f"*/{CURRENT}")) if base.exists() else []


def _spawn(launch: ProcessLaunch, workspace: Path, owner: str) -> tuple[Any, dict[str, Any]]:
    """Start `launch` on a free port; the process and what current.json says of it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = workspace / f"process-{port}.log"
    command = [part.replace("{port}", str(port)) for part in launch.command]
    env = minimal_env(workspace / "home", {**launch.env, **launch.secret_env, OWNER_ENV: owner})
    process = spawn(command, launch.workdir, env, log_path)
    return process, {
        "version": launch.version,
        "pid": process.pid,
        "created": create_time(process.pid),
        "port": port,
        "direct_url": url,
        "health_url": url + launch.health_path,
        "log": str(log_path),
        "command": command,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "startup_timeout_s": launch.startup_timeout_s,
    }


def _wait_healthy(launch: ProcessLaunch, process: Any, started: dict[str, Any], owner: str) -> None:
    """Return once `started` answers its health check; otherwise stop it and raise DeployFailed."""
    deadline = time.monotonic() + launch.startup_timeout_s
    detail = "not started"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            detail = f"process exited with code {process.returncode}"
            break
        healthy, detail = probe(started["health_url"], timeout_s=1.0)
        if healthy:
            return
        time.sleep(0.2)
    else:
        detail = f"not healthy within {launch.startup_timeout_s:.0f}s ({detail})"
    stop_process(process.pid, owner)
    log = Path(started["log"])
    raise DeployFailed(
        f"{launch.deliverable} {launch.version} did not start healthy: {detail}",
        {"attempted_version": launch.version, "log": str(log), "log_tail": redact(log_tail(log), _hidden(launch))},
    )


def _hidden(launch: ProcessLaunch) -> list[str]:
    return [*launch.secret_env.values(), *secret_values_of(launch.env), *platform_secrets()]


def _launch_record(launch: ProcessLaunch) -> dict[str, Any]:
    return {**dataclasses.asdict(launch), "workdir": str(launch.workdir)}


def _launch_of(record: dict[str, Any] | None) -> ProcessLaunch | None:
    return ProcessLaunch(**{**record, "workdir": Path(record["workdir"])}) if record else None


@contextlib.contextmanager
def _locked(path: Path, wait: bool = True) -> Iterator[None]:
    """One deploy or restart per (environment, deliverable) at a time, across processes; without
    `wait`, BlockingIOError when another holds it."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
