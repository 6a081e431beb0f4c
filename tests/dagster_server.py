"""`dagster dev` (webserver, daemon, code server) on a test's own DAGSTER_HOME, as `make dev` runs it.

Tests that need what only a running instance does (the run queue and launcher, the run
coordinator seeing HTTP headers, sensors ticking) start one here and talk to it over GraphQL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from resources.deploy_target import free_port
from tests.conftest import PROJECT_ROOT

READY = "{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"


def graphql(url: str, query: str, headers: dict[str, str] | None = None) -> dict | None:
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["data"]
    except OSError:
        return None


def wait_for(what: str, check: Callable[[], object], log: Path, deadline_s: float = 420,
             poll_s: float = 1.0) -> object:
    """Poll `check` until it returns something truthy; fail with the daemon's log tail otherwise."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(poll_s)
    pytest.fail(f"timed out waiting for {what}; daemon log:\n{log.read_text()[-4000:]}")


def kill_everything_of(home: Path, leader: subprocess.Popen) -> None:
    """dagster dev may ignore SIGTERM in sandboxes: kill its group, then anything using this home."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(leader.pid, sig)
        except ProcessLookupError:
            break
        time.sleep(2)
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if f"DAGSTER_HOME={home}".encode() in (proc / "environ").read_bytes():
                    os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                pass
    leader.wait(timeout=30)


@dataclass(frozen=True)
class DagsterServer:
    url: str
    home: Path
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextmanager
def dagster_dev(home: Path, env: dict[str, str], log: Path, ready_s: float = 240,
                workspace: Path = PROJECT_ROOT / "workspace.yaml") -> Iterator[DagsterServer]:
    """Start `dagster dev -w workspace.yaml` (or `workspace`) with `env`; yield once the UI answers and
    the daemons are healthy; kill everything it started afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        process = subprocess.Popen([str(Path(sys.executable).parent / "dagster"), "dev", "-w",
                                    str(workspace), "-h", "127.0.0.1", "-p", str(port)],
                                   cwd=PROJECT_ROOT, env={**env, "DAGSTER_HOME": str(home)}, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    server = DagsterServer(url, home, log)
    try:
        deadline = time.monotonic() + ready_s
        while True:
            data = graphql(url, READY) or {}
            statuses = data.get("instance", {}).get("daemonHealth", {}).get("allDaemonStatuses", [])
            if statuses and all(s["healthy"] for s in statuses if s["required"]):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"dagster dev did not come up on {url}:\n{server.log_tail()}")
            time.sleep(2)
        yield server
    finally:
        kill_everything_of(home, process)
