"""The local deploy target on its own: switch-over, rollback on a failed start, ownership of pids.

Deployments here are real processes (Python's http.server) so that health, ports and process
groups behave as they do for a service."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from platform_assets.settings import PROJECT_ROOT
from resources.deploy_target import DeployFailed, ProcessLaunch, probe
from resources.local_process import LocalProcessTarget
from resources.process_control import alive, stop_process


def http_server(version: str, workdir: Path) -> ProcessLaunch:
    return ProcessLaunch(deliverable="web", version=version, workdir=workdir, health_path="/",
                         command=[sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"],
                         startup_timeout_s=15)


def crashing(version: str, workdir: Path) -> ProcessLaunch:
    return ProcessLaunch(deliverable="web", version=version, workdir=workdir, health_path="/",
                         command=[sys.executable, "-c", "import sys; print('boom: no config'); sys.exit(3)"])


@pytest.fixture
def target(tmp_path: Path):
    target = LocalProcessTarget(environment="prod", root=str(tmp_path / "prod"))
    yield target
    target.stop("web")


def test_new_version_replaces_old_only_after_it_is_healthy(target: LocalProcessTarget, tmp_path: Path) -> None:
    first = target.deploy(http_server("v1", tmp_path))
    second = target.deploy(http_server("v2", tmp_path))
    assert second["previous_version"] == "v1"
    assert target.current("web")["version"] == "v2"
    assert probe(second["health_url"])[0]
    assert not alive(first["pid"], first["created"]), "the old version is stopped after the switch"
    assert first["port"] != second["port"]


def test_failed_start_keeps_the_previous_version(target: LocalProcessTarget, tmp_path: Path) -> None:
    first = target.deploy(http_server("v1", tmp_path))
    with pytest.raises(DeployFailed) as failure:
        target.deploy(crashing("v2", tmp_path))
    assert "exited with code 3" in str(failure.value)
    assert "boom: no config" in failure.value.metadata["log_tail"]
    assert target.current("web")["pid"] == first["pid"]
    assert target.current("web")["version"] == "v1"
    assert probe(first["health_url"])[0]


def test_start_that_never_gets_healthy_times_out(target: LocalProcessTarget, tmp_path: Path) -> None:
    launch = ProcessLaunch(deliverable="web", version="v9", workdir=tmp_path, health_path="/",
                           command=[sys.executable, "-c", "import time; time.sleep(60)"], startup_timeout_s=1.5)
    with pytest.raises(DeployFailed, match="not healthy within 2s"):
        target.deploy(launch)
    assert target.current("web") is None
    assert target.gateway().stop() is False, "a first deploy that failed leaves no gateway running"


def test_redeploying_the_running_version_is_a_no_op(target: LocalProcessTarget, tmp_path: Path) -> None:
    first = target.deploy(http_server("v1", tmp_path))
    again = target.deploy(http_server("v1", tmp_path))
    assert again["unchanged"] is True and again["pid"] == first["pid"]


def test_two_instances_never_share_deployments(tmp_path: Path) -> None:
    a = LocalProcessTarget(environment="prod", root=str(tmp_path / "a"))
    b = LocalProcessTarget(environment="prod", root=str(tmp_path / "b"))
    try:
        one, two = a.deploy(http_server("v1", tmp_path)), b.deploy(http_server("v1", tmp_path))
        assert one["port"] != two["port"]
        a.stop("web")
        assert probe(two["health_url"])[0], "stopping one instance's deployment leaves the other's running"
    finally:
        a.stop("web")
        b.stop("web")


def test_stop_process_leaves_foreign_processes_alone(tmp_path: Path) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        stop_process(stranger.pid, str(tmp_path))
        time.sleep(0.2)
        assert stranger.poll() is None, "a pid we did not start must never be killed"
    finally:
        stranger.kill()
        stranger.wait()


def served(version: str, workdir: Path) -> ProcessLaunch:
    """tests/served_app.py: `/work?sleep=S` answers after S seconds, with the version that served it."""
    return ProcessLaunch(deliverable="web", version=version, workdir=workdir, health_path="/health",
                         command=[sys.executable, str(PROJECT_ROOT / "tests" / "served_app.py"), "{port}"],
                         env={"PLATFORM_VERSION": version}, secret_env={"WEB_KEY": "not-in-current-json"},
                         startup_timeout_s=20)


def test_the_gateway_switches_after_health_and_drains_what_is_in_flight(target: LocalProcessTarget,
                                                                       tmp_path: Path) -> None:
    first = target.deploy(served("v1", tmp_path))
    stable = first["url"]
    answers: list[dict] = []
    slow = threading.Thread(target=lambda: answers.append(json.loads(
        urllib.request.urlopen(f"{stable}/work?sleep=2", timeout=30).read())))
    slow.start()
    time.sleep(0.5)  # the slow request is in flight to v1 when v2 takes over

    second = target.deploy(served("v2", tmp_path))
    slow.join()

    assert answers == [{"path": "/work", "version": "v1"}], "the request in flight finished on the old version"
    assert second["url"] == stable and second["direct_url"] != first["direct_url"]
    assert json.loads(urllib.request.urlopen(f"{stable}/work", timeout=5).read())["version"] == "v2"
    assert not alive(first["pid"]), "v1 is stopped once drained"
    launch = target.base() / "web" / "launch.json"
    assert stat.S_IMODE(launch.stat().st_mode) == 0o600, "what a restart needs holds secrets: private"
    assert "not-in-current-json" not in (target.base() / "web" / "current.json").read_text()
    target.stop("web")
    assert target.gateway().running() is None, "the gateway stops with the environment's last deployment"
