"""Governance end to end on a running instance: `dagster dev` (webserver, daemon, run queue,
the platform's run coordinator) with `identity.mode: verified`, a teams registry with real SSH
keys, and the demo service whose prod needs alice's approval.

Runs are launched the two ways people launch them: GraphQL with the authenticating proxy's
identity header (what the UI sends behind oauth2-proxy), and the `deliver` CLI, which signs its
requests with the member's SSH key. No proxy runs here; the header is set by the test, as the
proxy would set it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster_graphql import DagsterGraphQLClient

from platform_assets.settings import PROJECT_ROOT
from tests.conftest import copy_deliverable, ssh_key, write_teams
from tests.dagster_server import DagsterServer, dagster_dev

SERVICE, FLAKY = "recommendations-api", "recommendations-flaky"
HEADER = "X-Forwarded-Email"
DEADLINE_S = 300


@dataclass
class Governed:
    server: DagsterServer
    env: dict[str, str]
    keys: dict[str, Path]
    catalog: Path

    def client(self, email: str | None = None) -> DagsterGraphQLClient:
        port = int(self.server.url.rsplit(":", 1)[1])
        return DagsterGraphQLClient("127.0.0.1", port_number=port, headers={HEADER: email} if email else None)

    def launch(self, keys: list[str], email: str | None = None, tags: dict[str, str] | None = None) -> str:
        return self.client(email).submit_job_execution("__ASSET_JOB", tags=tags or {}, asset_selection=[
            dg.AssetKey.from_user_string(key) for key in keys])

    def wait(self, run_id: str) -> dg.DagsterRun:
        end = time.monotonic() + DEADLINE_S
        with self.instance() as instance:
            while time.monotonic() < end:
                run = instance.get_run_by_id(run_id)
                if run and run.is_finished:
                    return run
                time.sleep(1)
        pytest.fail(f"run {run_id} did not finish; server log:\n{self.server.log_tail()}")

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.server.home))

    def deliver(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "platform_assets.cli", *args], cwd=PROJECT_ROOT, env=self.env,
                              capture_output=True, text=True, timeout=DEADLINE_S)

    def latest(self, key: str) -> dict | None:
        with self.instance() as instance:
            event = instance.get_latest_materialization_event(dg.AssetKey.from_user_string(key))
        return {k: v.value for k, v in event.asset_materialization.metadata.items()} if event else None

    def failure(self, run_id: str) -> str:
        with self.instance() as instance:
            records = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        return "\n".join(r.dagster_event.step_failure_data.error.message for r in records)  # type: ignore[union-attr]

    def wait_for(self, what: str, check) -> object:
        end = time.monotonic() + DEADLINE_S
        while time.monotonic() < end:
            if value := check():
                return value
            time.sleep(1)
        pytest.fail(f"timed out waiting for {what}; server log:\n{self.server.log_tail()}")


def through(name: str, *envs: str) -> list[str]:
    return [f"{name}/build", f"{name}/evaluate", *(f"{name}/{env}" for env in envs)]


@pytest.fixture(scope="module")
def governed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Governed]:
    root = tmp_path_factory.mktemp("governed")
    keys_dir = root / "keys"
    keys_dir.mkdir()
    keys = {name: ssh_key(keys_dir, name) for name in ("alice", "bob", "mallory", "olga")}
    teams = write_teams(root / "teams.yaml", {"platform": ["olga"], "recs-team": ["alice", "bob"],
                                              "ml-team": ["mallory"]}, keys)
    catalog = root / "catalog"
    catalog.mkdir()
    shutil.copytree(copy_deliverable(SERVICE, catalog, standalone=True), catalog / FLAKY)
    for name, prod in ((SERVICE, {"mode": "manual", "approvers": ["alice"]}), (FLAKY, {"mode": "auto"})):
        folder = catalog / name
        spec = yaml.safe_load((folder / "deliverable.yaml").read_text())
        spec.update(name=name, promotion={"staging": {"mode": "auto"}, "prod": prod})
        (folder / "deliverable.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        if name == FLAKY:  # healthy at start, then its health check fails: unhealthy in staging
            app = folder / "src" / "recommendations_api" / "app.py"
            app.write_text(app.read_text().replace(
                "def health() -> Health:\n",
                "def health() -> Health:\n    CALLS.append(1)\n    if len(CALLS) > 1:\n"
                "        raise HTTPException(status_code=503, detail='degraded')\n").replace(
                "RETENTION_THRESHOLD = 0.5\n", "RETENTION_THRESHOLD = 0.5\nCALLS: list[int] = []\n"))
    config = yaml.safe_load((PROJECT_ROOT / "platform.yaml").read_text())
    config["automation"] = {"sensor_interval_s": 2}
    (root / "platform.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    home = root / "home"
    home.mkdir()
    shutil.copyfile(PROJECT_ROOT / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PLATFORM_"))},
           "DAGSTER_HOME": str(home), "PLATFORM_CONFIG": str(root / "platform.yaml"),
           "PLATFORM_CATALOG_DIR": str(catalog), "PLATFORM_TEAMS_FILE": str(teams),
           "PLATFORM_IDENTITY_MODE": "verified", "PLATFORM_IDENTITY_KEY": "governance-test-key"}
    with dagster_dev(home, env, root / "dagster-dev.log") as server:
        governed = Governed(server, {**env, "PLATFORM_WEBSERVER_URL": server.url}, keys, catalog)
        yield governed
        stop = subprocess.run([sys.executable, "-m", "platform_assets.cli", "down"], cwd=PROJECT_ROOT, env=env,
                              capture_output=True, text=True)
        assert stop.returncode == 0, stop.stderr


def test_a_ui_launch_carries_the_proxys_identity_and_without_it_deploys_are_refused(governed: Governed) -> None:
    run = governed.wait(governed.launch(through(SERVICE, "staging"), email="alice@example.com"))
    anonymous = governed.wait(governed.launch([f"{SERVICE}/staging"]))
    forged = governed.wait(governed.launch([f"{SERVICE}/staging"], tags={
        "platform/requested_by": "alice", "platform/identity_source": "proxy"}))
    outsider = governed.wait(governed.launch([f"{SERVICE}/staging"], email="eve@example.com"))

    assert run.status == dg.DagsterRunStatus.SUCCESS, governed.failure(run.run_id)
    assert run.tags["platform/requested_by"] == "alice" and run.tags["platform/identity_source"] == "proxy"
    assert governed.latest(f"{SERVICE}/staging")["requested_by"] == "alice (proxy)"
    for refused in (anonymous, forged):
        assert refused.status == dg.DagsterRunStatus.FAILURE
        assert "this run has no verified requester" in governed.failure(refused.run_id)
    assert forged.tags["platform/requested_by"] == "", "the coordinator overwrites a requester written by hand"
    assert "eve@example.com is not a member" in governed.failure(outsider.run_id)


def test_only_a_signed_approval_by_an_approver_lets_a_version_into_prod(governed: Governed) -> None:
    staged = governed.wait_for("a version in staging", lambda: governed.latest(f"{SERVICE}/staging"))["version"]
    with governed.instance() as instance:
        instance.report_runless_asset_event(dg.AssetObservation(
            asset_key=dg.AssetKey([SERVICE, "prod"]),
            metadata={"event": "approval", "version": staged, "environment": "prod", "approved_by": "alice"}))
    unapproved = governed.deliver("promote", SERVICE, "--env", "prod", "--key", str(governed.keys["bob"]), "--wait")
    by_mallory = governed.deliver("approve", SERVICE, "--version", staged, "--env", "prod",
                                  "--key", str(governed.keys["mallory"]))
    by_alice = governed.deliver("approve", SERVICE, "--version", staged, "--env", "prod",
                                "--key", str(governed.keys["alice"]), "--wait")

    assert unapproved.returncode == 1, unapproved.stdout
    assert f"{staged} needs an approval for prod" in unapproved.stderr
    assert "ignored an approval by alice: it carries no proof" in unapproved.stderr
    assert governed.latest(f"{SERVICE}/prod") is None
    assert by_mallory.returncode == 2 and "mallory is not an approver" in by_mallory.stderr
    assert by_alice.returncode == 0, by_alice.stderr
    prod = governed.wait_for("the promotion sensor to deploy the approved version",
                             lambda: (p := governed.latest(f"{SERVICE}/prod")) and p["version"] == staged and p)
    assert prod["requested_by"] == "sensor:platform_promotion (automation)" and prod["healthy"] is True
    trail = json.loads(governed.deliver("history", SERVICE, "--json").stdout)
    approvals = [e["detail"] for e in trail if e["event"] == "approval"]
    assert approvals[0] == "by alice" and approvals[1].startswith("IGNORED (it carries no proof"), approvals


def test_a_version_unhealthy_in_staging_is_not_promoted(governed: Governed) -> None:
    first = governed.wait(governed.launch(through(FLAKY, "staging"), email="bob@example.com"))
    staging = governed.latest(f"{FLAKY}/staging")
    promoted = governed.deliver("promote", FLAKY, "--env", "prod", "--key", str(governed.keys["bob"]), "--wait")

    assert first.status == dg.DagsterRunStatus.FAILURE and staging["healthy"] is False
    assert promoted.returncode == 1
    assert f"{staging['version']} is not healthy in staging" in promoted.stderr
    assert governed.latest(f"{FLAKY}/prod") is None


def test_a_signed_request_counts_for_one_run_and_one_action(governed: Governed) -> None:
    promoted = governed.deliver("promote", SERVICE, "--env", "prod", "--key", str(governed.keys["bob"]), "--wait")
    run_id = promoted.stdout.split("run ", 1)[1].split()[0]
    with governed.instance() as instance:
        signed = {k: v for k, v in instance.get_run_by_id(run_id).tags.items() if k.startswith("platform/request")}
    replayed = governed.wait(governed.launch([f"{SERVICE}/prod"], tags={**signed, "platform/trigger": "cli-promote"}))
    elsewhere = governed.wait(governed.launch([f"{SERVICE}/staging"], tags=signed))
    current = governed.latest(f"{SERVICE}/prod")["version"]
    outsider = governed.deliver("rollback", SERVICE, "--env", "prod", "--to", current, "--key",
                                str(governed.keys["mallory"]), "--wait")

    assert promoted.returncode == 0, promoted.stderr
    assert "already used by another run" in governed.failure(replayed.run_id)
    assert "already used by another run" in governed.failure(elsewhere.run_id)
    assert outsider.returncode == 1 and "mallory may not rollback" in outsider.stderr, outsider.stderr


def test_two_deploys_of_one_environment_run_one_after_the_other(governed: Governed) -> None:
    app = governed.catalog / SERVICE / "src" / "recommendations_api" / "app.py"
    app.write_text(app.read_text().replace('version="1.3.0"', 'version="1.3.1"'))
    first = governed.latest(f"{SERVICE}/prod")["version"]
    second = governed.wait_for("the source sensor to stage the change", lambda: (
        (s := governed.latest(f"{SERVICE}/staging")) and s["version"] != first and s["healthy"] and s["version"]))
    approve = governed.deliver("approve", SERVICE, "--version", second, "--env", "prod",
                               "--key", str(governed.keys["alice"]), "--wait")
    assert approve.returncode == 0, approve.stderr
    governed.wait_for("the promotion of the approved change", lambda: governed.latest(f"{SERVICE}/prod")["version"]
                      == second)

    runs = [governed.launch([f"{SERVICE}/prod"], email=email, tags=tags) for email, tags in (
        ("olga@example.com", {"platform/rollback_to": first, "platform/trigger": "ui-rollback"}),
        ("bob@example.com", {"platform/trigger": "ui-promote"}))]
    finished = [governed.wait(run_id) for run_id in runs]

    assert [r.status for r in finished] == [dg.DagsterRunStatus.SUCCESS] * 2, [governed.failure(r) for r in runs]
    windows = []
    with governed.instance() as instance:
        for run_id in runs:
            logs = instance.all_logs(run_id)
            held = next(e.timestamp for e in logs if "deploy lock held" in (e.user_message or ""))
            done = next(e.timestamp for e in logs if e.dagster_event and e.dagster_event.is_step_materialization)
            windows.append((held, done))
    (_, a_end), (b_start, _) = sorted(windows)
    assert a_end <= b_start, f"the two deploys overlapped: {windows}"
    record = governed.latest(f"{SERVICE}/prod")
    with urllib.request.urlopen(f"{record['url']}/health", timeout=5) as response:
        assert json.loads(response.read())["version"] == record["version"]
    assert {r.tags["platform/requested_by"] for r in finished} == {"olga", "bob"}
