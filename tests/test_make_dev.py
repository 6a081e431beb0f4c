"""`make dev` as a user runs it: the UI answers, the daemons are healthy, the catalog's assets show."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from resources.deploy_target import free_port
from tests.conftest import PROJECT_ROOT
from tests.dagster_server import graphql as server_graphql
from tests.dagster_server import kill_everything_of

QUERY = """
{ assetNodes { assetKey { path } }
  instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }
"""


def graphql(port: int) -> dict | None:
    return server_graphql(f"http://127.0.0.1:{port}", QUERY)


def test_make_dev_serves_ui_with_daemon_and_catalog(tmp_path: Path) -> None:
    port = free_port()
    home = tmp_path / "dagster_home"
    log = (tmp_path / "dev.log").open("w")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PLATFORM_"))}
    dev = subprocess.Popen(
        ["make", "dev", f"DEV_PORT={port}", f"DAGSTER_HOME_DIR={home}"],
        cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        data = None
        while time.monotonic() < deadline:
            data = graphql(port)
            statuses = (data or {}).get("instance", {}).get("daemonHealth", {}).get("allDaemonStatuses", [])
            if statuses and all(s["healthy"] for s in statuses if s["required"]):
                break
            assert dev.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
            time.sleep(2)
        else:
            raise AssertionError(f"UI/daemon not ready on {port}: {data}\n{(tmp_path / 'dev.log').read_text()[-3000:]}")
        keys = {"/".join(node["assetKey"]["path"]) for node in data["assetNodes"]}
        assert {"recommendations-api/build", "recommendations-api/prod", "platform/catalog",
                "customer-features/prod", "customer-segments/prod", "warehouse/customer_features"} <= keys
        daemons = {s["daemonType"] for s in statuses if s["required"] and s["healthy"]}
        assert {"SENSOR", "SCHEDULER", "QUEUED_RUN_COORDINATOR"} <= daemons
        assert (home / "dagster.yaml").exists(), "make dev creates the instance folder with its config"
    finally:
        kill_everything_of(home, dev)
        log.close()


def test_make_mlflow_ui_opens_the_store_of_the_instance_in_use(tmp_path: Path) -> None:
    """`mlflow` replaced by a script echoing its arguments: what matters is which store it is given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, script in {"python": f'exec {PROJECT_ROOT}/.venv/bin/python "$@"', "mlflow": 'echo "$@"'}.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n")
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PLATFORM_"))}

    def ui_args(**extra: str) -> str:
        return subprocess.run(["make", "-s", "-o", "install", "mlflow-ui", f"BIN={bin_dir}"], cwd=PROJECT_ROOT,
                              env={**env, **extra}, capture_output=True, text=True, check=True).stdout

    exported = tmp_path / "exported_home"
    assert f"--backend-store-uri sqlite:///{exported}/platform/mlflow/mlflow.db " in ui_args(
        DAGSTER_HOME=str(exported))
    assert f"--default-artifact-root {exported}/platform/mlflow/artifacts " in ui_args(DAGSTER_HOME=str(exported))
    default = PROJECT_ROOT / ".dagster_home"
    assert f"sqlite:///{default}/platform/mlflow/mlflow.db" in ui_args()
