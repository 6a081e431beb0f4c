"""The gateway of one local environment, seen from the platform: start it, move a route, drain a
version, stop it (the process itself is resources/gateway_server.py).

Its folder `<deployments>/.gateway/` holds the port (from `environments[].gateway_port`, else
chosen once and kept here, so an instance's stable URLs never change), the admin token (0600: the
admin calls move traffic), the running gateway's pid and start time, and its log.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from platform_assets.sandbox import minimal_env
from resources import process_control as processes
from resources.deploy_lock import file_lock
from resources.deploy_target import DeployFailed, free_port
from resources.gateway_server import serving_id

ADMIN = "/-/gateway"
START_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class LocalGateway:
    deployments: Path  # the environment's deployments folder: routes are read from its current.json files
    configured_port: int | None = None

    @property
    def folder(self) -> Path:
        return processes.private_dir(self.deployments / ".gateway")

    def port(self) -> int:
        if self.configured_port:
            return self.configured_port
        kept = self.folder / "port"
        if not kept.exists():
            kept.write_text(str(free_port()))
        return int(kept.read_text())

    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port()}"

    def url(self, name: str) -> str:
        """The stable address of `name` in this environment."""
        return f"{self.base_url()}/{name}"

    def running(self) -> dict | None:
        """The running gateway's pid and port, None when none runs."""
        state = processes.read_json(self.folder / "gateway.json")
        return state if state and processes.alive(state["pid"], state.get("created")) else None

    def ensure(self) -> bool:
        """Start the gateway unless it runs; True if it had to be started. DeployFailed when it cannot
        listen (its port taken by something else, for instance)."""
        with file_lock(self.folder / "start.lock", "gateway start", wait_s=60):
            if self.running() and self._answers():
                return False
            self.stop()
            port = self.port()
            token = self.folder / "admin-token"
            if not token.exists():
                token.touch(mode=0o600)
                token.write_text(secrets.token_urlsafe(32))
            log = self.folder / "gateway.log"
            env = minimal_env(processes.private_dir(self.folder / "home"), {processes.OWNER_ENV: str(self.folder)})
            command = [sys.executable, "-m", "resources.gateway_server", "--deployments", str(self.deployments),
                       "--port", str(port), "--token-file", str(token)]
            process = processes.spawn(command, self.folder, env, log)
            processes.write_json(self.folder / "gateway.json",
                                 {"pid": process.pid, "port": port, "created": processes.create_time(process.pid)})
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    break
                if self._answers():
                    return True
                time.sleep(0.1)
            processes.stop_process(process.pid, str(self.folder))
            environment = self.deployments.name
            where = (f"port {port} (platform.yaml, field 'environments[{environment}].gateway_port': set a free port)"
                     if self.configured_port else
                     f"port {port}, kept in {self.folder / 'port'} (delete that file to choose another)")
            raise DeployFailed(f"the gateway of {self.deployments.name} did not start on {where}: "
                               f"{processes.log_tail(log, 5) or 'no output'}", {"gateway_log": str(log)})

    def reroute(self, name: str) -> None:
        """Make the gateway read `name`'s route again (after current.json changed); it answers once
        the new route is in use. A gateway that is not running reads every route when it starts,
        and one that does not answer is started again."""
        state = self.running()
        if state is None:
            return
        try:
            self._admin(state, "POST", f"/routes/{quote(name)}")
        except OSError:
            self.ensure()

    def drain(self, upstream: str, timeout_s: float) -> int:
        """Wait until no request is in flight through the gateway to `upstream`; the number left."""
        state = self.running()
        if state is None:
            return 0
        try:
            answer = self._admin(state, "GET", f"/drain?upstream={quote(upstream, safe='')}&timeout_s={timeout_s}",
                                 timeout_s=timeout_s + 5)
        except OSError:
            return 0  # no gateway answering: nothing goes through it
        return int(answer.get("in_flight", 0))

    def stop(self) -> bool:
        state = processes.read_json(self.folder / "gateway.json")
        if state is None:
            return False
        processes.stop_process(state["pid"], str(self.folder))
        (self.folder / "gateway.json").unlink(missing_ok=True)
        return True

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url() + ADMIN + "/health", timeout=1.0) as response:
                return json.loads(response.read()).get("serves") == serving_id(self.deployments)  # ours, not another's
        except (OSError, ValueError):
            return False

    def _admin(self, state: dict, method: str, path: str, timeout_s: float = 10.0) -> dict:
        """An admin call to the running gateway, on the port it listens on."""
        token = (self.folder / "admin-token").read_text().strip()
        request = urllib.request.Request(f"http://127.0.0.1:{state['port']}{ADMIN}{path}", method=method,
                                         headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read() or b"{}")
