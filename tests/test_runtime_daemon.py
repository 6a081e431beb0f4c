"""Supervision with the real daemon: a prod process killed with `kill -9` is recorded as down and
restarted by the `platform_runtime` sensor within two sensor intervals, the restart count is on
the `live` check, and `deliver status` shows it.

`dagster dev` (tests/dagster_server.py) runs on the test's DAGSTER_HOME with a copy of
platform.yaml whose sensors tick every 2 seconds, exactly as `make dev` runs it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from platform_assets.liveness import DOWN, UP, Live, live_key
from platform_assets.settings import PROJECT_ROOT, load_settings
from resources.deploy_target import probe
from resources.process_control import alive
from tests.conftest import Platform, cli
from tests.dagster_server import dagster_dev, wait_for

SERVICE = "recommendations-api"
INTERVAL_S = 2
TICK_SLACK_S = 6  # what one tick itself takes here (a gRPC call into the code server, the probes)


def live_history(instance: dg.DagsterInstance, since: float) -> list[Live]:
    """`live` evaluations of prod recorded after `since`, oldest first."""
    records = instance.event_log_storage.get_asset_check_execution_history(live_key(SERVICE, "prod"), limit=50)
    found = [(r.create_timestamp, r.event.asset_check_evaluation) for r in records
             if r.event and r.event.asset_check_evaluation and r.create_timestamp > since]
    return [Live.of(evaluation) for _, evaluation in sorted(found, key=lambda item: item[0])]


@pytest.fixture
def fast_sensors(platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Platform:
    config = yaml.safe_load((PROJECT_ROOT / "platform.yaml").read_text())
    config["automation"] = {"sensor_interval_s": INTERVAL_S}
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    monkeypatch.setenv("PLATFORM_CONFIG", str(tmp_path / "platform.yaml"))
    platform.settings = load_settings()
    return platform


def test_a_killed_prod_process_is_recorded_down_and_restarted_by_the_daemon(fast_sensors: Platform,
                                                                           tmp_path: Path) -> None:
    platform = fast_sensors
    stages = [f"{SERVICE}/{stage}" for stage in ("build", "evaluate", "staging", "prod")]
    assert platform.materialize(*stages).success
    before = platform.current(SERVICE, "prod")
    log = tmp_path / "dagster-dev.log"
    with dagster_dev(platform.home, dict(os.environ), log):
        wait_for("the runtime sensor to record prod as up",
                 lambda: [x for x in live_history(platform.instance, 0) if x.state == UP], log, poll_s=0.25)

        killed_at = time.time()
        os.kill(before["pid"], signal.SIGKILL)
        restarted = wait_for("a restart", lambda: (c := platform.current(SERVICE, "prod")) and
                             c["pid"] != before["pid"] and c, log, poll_s=0.25)
        took = time.time() - killed_at
        # The sensor restarts within its tick; the daemon writes the tick's evaluations when it ends.
        down = wait_for("the down record", lambda: [x for x in live_history(platform.instance, killed_at)
                                                    if x.state == DOWN], log, deadline_s=30, poll_s=0.25)
        assert down and "is gone" in down[0].detail, live_history(platform.instance, killed_at)
        assert took <= 2 * INTERVAL_S + TICK_SLACK_S, f"restarted {took:.1f}s after the kill"
        assert not alive(before["pid"]) and restarted["restarts"] == 1 and restarted["url"] == before["url"]
        up = wait_for("up again with one restart", lambda: [x for x in live_history(platform.instance, killed_at)
                                                            if x.state == UP and x.restarts == 1], log,
                      poll_s=0.25)
        assert up[0].version == before["version"] and probe(restarted["health_url"])[0]

        status = cli("status", SERVICE, "--json")
        assert status.returncode == 0, status.stderr
        [row] = json.loads(status.stdout)
        prod = row["environments"]["prod"]
        assert (prod["live"], prod["restarts"], prod["url"], prod["version"]) == (
            UP, 1, before["url"], before["version"])
        assert f"up since {prod['since']}, 1 restart(s)" in cli("status", SERVICE).stdout
    print(f"kill -9 to restarted: {took:.1f}s (sensor interval {INTERVAL_S}s)")
