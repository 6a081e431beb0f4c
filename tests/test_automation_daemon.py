"""End to end with the real daemon: a source change reaches prod without a manual step.

`dagster dev` (webserver and daemon) runs on this test's DAGSTER_HOME with the project's
workspace.yaml and deploy/dagster.local.yaml, so its sensors and the runs it launches load the
platform's definitions in their own processes, exactly as under `make dev`, in the embedded
default's identity mode (the OS user). Its platform.yaml is a copy with a 2-second sensor
interval. The catalog holds two copies of the demo service: `recommendations-api` is promoted to
prod automatically, `recommendations-eu` waits in staging for an approval by this OS user.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.scheduler.instigation import InstigatorType

from platform_assets.settings import PROJECT_ROOT, load_settings
from tests.conftest import Platform, cli
from tests.dagster_server import dagster_dev, wait_for

SERVICE, EU = "recommendations-api", "recommendations-eu"


def stages(name: str, *envs: str) -> list[str]:
    return [f"{name}/build", f"{name}/evaluate", *(f"{name}/{env}" for env in envs)]


def sensor_cursor(instance: dg.DagsterInstance, name: str) -> str | None:
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name == name and state.instigator_data is not None:
            return state.instigator_data.cursor  # type: ignore[union-attr]
    return None


def latest_version(instance: dg.DagsterInstance, key: str) -> str | None:
    event = instance.get_latest_materialization_event(dg.AssetKey.from_user_string(key))
    return event.asset_materialization.metadata["version"].value if event else None  # type: ignore[union-attr]


@pytest.fixture
def two_services(platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Platform:
    eu = Path(shutil.copytree(platform.catalog / SERVICE, platform.catalog / EU))
    spec = yaml.safe_load((eu / "deliverable.yaml").read_text())
    spec["name"] = EU
    spec["promotion"] = {"staging": {"mode": "auto"}, "prod": {"mode": "manual", "approvers": [getpass.getuser()]}}
    (eu / "deliverable.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    teams = {"platform_team": "platform", "members": {getpass.getuser(): {}},
             "teams": {"platform": {"members": []}, "recs-team": {"members": [getpass.getuser()]}}}
    (tmp_path / "teams.yaml").write_text(yaml.safe_dump(teams))
    monkeypatch.setenv("PLATFORM_TEAMS_FILE", str(tmp_path / "teams.yaml"))
    config = yaml.safe_load((PROJECT_ROOT / "platform.yaml").read_text())
    config["automation"] = {"sensor_interval_s": 2}
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    monkeypatch.setenv("PLATFORM_CONFIG", str(tmp_path / "platform.yaml"))
    return dataclasses.replace(platform, settings=load_settings())


@pytest.fixture
def daemon(two_services: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Both services delivered by hand (through prod, and to staging for the manual one), then
    `dagster dev` (UI and daemon) in its own process group; its log file is yielded."""
    assert two_services.materialize(*stages(SERVICE, "staging", "prod"), *stages(EU, "staging")).success
    log = tmp_path / "dagster-dev.log"
    with dagster_dev(two_services.home, dict(os.environ), log) as server:
        monkeypatch.setenv("PLATFORM_WEBSERVER_URL", server.url)
        yield log


def test_a_source_change_reaches_prod_by_policy_without_a_manual_step(two_services: Platform, daemon: Path) -> None:
    platform, instance = two_services, two_services.instance
    before = {name: latest_version(instance, f"{name}/build") for name in (SERVICE, EU)}
    wait_for("the source sensor's baseline tick", lambda: sensor_cursor(instance, "platform_source_changes"), daemon)

    for name in (SERVICE, EU):
        app = platform.catalog / name / "src" / "recommendations_api" / "app.py"
        app.write_text(app.read_text().replace('version="1.3.0"', 'version="1.3.1"'))
    new = {name: wait_for(f"a new build of {name}", lambda n=name: (v := latest_version(instance, f"{n}/build"))
                          != before[n] and v, daemon) for name in (SERVICE, EU)}
    wait_for(f"{SERVICE} {new[SERVICE]} in prod",
             lambda: latest_version(instance, f"{SERVICE}/prod") == new[SERVICE], daemon)
    wait_for(f"{EU} {new[EU]} in staging", lambda: latest_version(instance, f"{EU}/staging") == new[EU], daemon)
    time.sleep(3 * 2 + 2)  # three promotion ticks: none may take the EU version to prod unapproved

    assert latest_version(instance, f"{EU}/prod") is None, "manual prod waits for an approval"
    approved = cli("approve", EU, "--version", new[EU], "--env", "prod", "--wait")
    assert approved.returncode == 0, approved.stderr
    wait_for(f"{EU} {new[EU]} in prod after the approval",
             lambda: latest_version(instance, f"{EU}/prod") == new[EU], daemon)

    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": "platform_source_changes"}))
    promotions = [run for sensor in ("platform_promotion", "platform_promotion_on_success")
                  for run in instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": sensor}))]
    assert sorted(r.tags["platform/deliverable"] for r in runs) == [SERVICE, EU], "one delivery per change"
    assert sorted(r.tags["dagster/run_key"] for r in promotions) == sorted(
        f"promote:{name}:{new[name]}:{env}" for name in (SERVICE, EU) for env in ("staging", "prod")), \
        "each promotion once (by either promotion sensor), the first environment's too"
    trail = json.loads(cli("history", EU, "--json").stdout)
    events = [(e["asset"], e["event"], e["version"], e["detail"]) for e in trail]
    assert events[:2] == [(f"{EU}/prod", "deploy", new[EU], "healthy (promotion)"),
                          (f"{EU}/prod", "approval", new[EU], f"by {getpass.getuser()}")], events
    assert (f"{EU}/staging", "deploy", new[EU], "healthy (promotion)") in events
    assert (f"{EU}/build", "build", new[EU], "built") in events
