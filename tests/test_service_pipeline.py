"""The whole service pipeline through real processes: pytest, pip, a wheel, uvicorn.

Each test starts from a copy of the demo service delivered to prod, changes the copy the way a
developer would, and checks what the platform did and what prod serves afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import dagster as dg
import pytest

from platform_assets.records import ROLLBACK_TAG, TRIGGER_TAG
from tests.conftest import Platform, cli, materialize_with_cli, status_json

SERVICE = "recommendations-api"
THROUGH_PROD = [f"{SERVICE}/build", f"{SERVICE}/evaluate", f"{SERVICE}/staging", f"{SERVICE}/prod"]


def health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
        return json.loads(response.read())


def checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed for e in result.get_asset_check_evaluations()}


def edit(platform: Platform, relative: str, old: str, new: str) -> None:
    path = platform.catalog / SERVICE / relative
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


@pytest.fixture
def delivered(platform: Platform) -> Platform:
    """The demo service in staging and prod, as the first delivery of a new service."""
    result = platform.materialize(*THROUGH_PROD)
    assert result.success, result.all_events
    return platform


def test_cli_materialize_through_prod_serves_health(platform: Platform) -> None:
    """The exact command of the README, on a fresh DAGSTER_HOME, then `deliver status`."""
    materialize_with_cli(THROUGH_PROD)
    [row] = status_json()
    version = platform.latest(f"{SERVICE}/build")["version"]
    assert row["versions"] == {"staging": version, "prod": version}
    assert row["gates"] == f"{version} passed"
    assert health(row["endpoint"]) == {"status": "ok", "version": version, "environment": "prod"}
    table = cli("status").stdout
    assert SERVICE in table and row["endpoint"] in table


def test_first_delivery_records_versions_gates_and_health(delivered: Platform) -> None:
    build = delivered.latest(f"{SERVICE}/build")
    version = build["version"]
    written = sum(p.read_text().count("\ndef test_") for p in (delivered.catalog / SERVICE / "tests").glob("test_*.py"))
    assert build["tests_failed"] == 0 and build["tests_passed"] + build["tests_skipped"] == written
    assert build["tests_skipped"] == 1, "the churn-model contract test needs a deployed model; none here"
    assert delivered.latest(f"{SERVICE}/evaluate")["gates_passed"] is True
    for env in ("staging", "prod"):
        deployed = delivered.latest(f"{SERVICE}/{env}")
        assert deployed["version"] == version
        assert health(deployed["url"])["environment"] == env
    assert delivered.latest(f"{SERVICE}/prod")["promoted_from"] == f"{SERVICE}/staging"
    staging, prod = delivered.current(SERVICE, "staging"), delivered.current(SERVICE, "prod")
    assert staging["port"] != prod["port"]
    assert "/deployments/prod/" in prod["command"][0], "prod runs from its own isolated environment"


def test_breaking_contract_fails_gate_and_prod_keeps_serving(delivered: Platform) -> None:
    old_version = delivered.latest(f"{SERVICE}/prod")["version"]
    prod_url = delivered.latest(f"{SERVICE}/prod")["url"]
    edit(delivered, "src/recommendations_api/app.py", "    name: str\n", "    title: str\n")
    edit(delivered, "src/recommendations_api/app.py", "name=PRODUCTS[pid]", "title=PRODUCTS[pid]")

    result = delivered.materialize(*THROUGH_PROD)

    assert not result.success
    assert checks(result)[f"{SERVICE}/evaluate:api_compatibility"] is False
    assert checks(result)[f"{SERVICE}/evaluate:tests"] is True
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "api_compatibility"]
    breaking = evaluation.metadata["breaking_changes"].value
    assert any("items[].name" in change and "removed" in change for change in breaking), breaking
    evaluated = delivered.latest(f"{SERVICE}/evaluate")
    assert evaluated["gates_passed"] is False and evaluated["failed_gates"] == ["api_compatibility"]
    assert delivered.latest(f"{SERVICE}/prod")["version"] == old_version
    assert health(prod_url)["version"] == old_version


def test_gate_failed_version_is_refused_when_deployed_alone(delivered: Platform) -> None:
    edit(delivered, "tests/test_app.py", 'assert response.json()["status"] == "ok"', "assert False")
    assert not delivered.materialize(f"{SERVICE}/build", f"{SERVICE}/evaluate").success
    failed_version = delivered.latest(f"{SERVICE}/evaluate")["version"]

    result = delivered.materialize(f"{SERVICE}/staging")

    assert not result.success
    failure = result.failure_data_for_node("recommendations_api__staging")
    assert f"{failed_version} did not pass its gates (tests)" in failure.error.message
    assert delivered.latest(f"{SERVICE}/staging")["version"] != failed_version


def test_major_bump_allows_breaking_change_when_policy_says_so(delivered: Platform) -> None:
    edit(delivered, "src/recommendations_api/app.py", "    name: str\n", "    title: str\n")
    edit(delivered, "src/recommendations_api/app.py", "name=PRODUCTS[pid]", "title=PRODUCTS[pid]")
    edit(delivered, "src/recommendations_api/app.py", 'version="1.3.0"', 'version="2.0.0"')

    result = delivered.materialize(*THROUGH_PROD)

    assert result.success
    new_version = delivered.latest(f"{SERVICE}/build")["version"]
    assert health(delivered.latest(f"{SERVICE}/prod")["url"])["version"] == new_version


def test_version_that_does_not_start_in_prod_is_rolled_back(delivered: Platform) -> None:
    """Healthy in staging, but prod lacks a setting it needs at startup: prod keeps the old version."""
    old = delivered.current(SERVICE, "prod")
    edit(
        delivered,
        "src/recommendations_api/app.py",
        'app = FastAPI(title="recommendations-api", version="1.3.0")',
        "from contextlib import asynccontextmanager\n\n\n"
        "@asynccontextmanager\n"
        "async def lifespan(_app):\n"
        "    if os.environ.get('PLATFORM_ENVIRONMENT') == 'prod' and 'RECS_SIGNING_KEY' not in os.environ:\n"
        "        raise RuntimeError('RECS_SIGNING_KEY is required in prod')\n"
        "    yield\n\n\n"
        'app = FastAPI(title="recommendations-api", version="1.3.0", lifespan=lifespan)',
    )

    result = delivered.materialize(*THROUGH_PROD)

    assert not result.success
    new_version = delivered.latest(f"{SERVICE}/build")["version"]
    assert delivered.latest(f"{SERVICE}/staging")["version"] == new_version
    assert delivered.latest(f"{SERVICE}/prod")["version"] == old["version"]
    assert delivered.current(SERVICE, "prod")["pid"] == old["pid"]
    assert health(old["url"])["version"] == old["version"]
    failure = result.failure_data_for_node("recommendations_api__prod")
    assert "did not start healthy" in failure.error.message
    assert f"prod keeps serving {old['version']}" in failure.error.message
    observation = delivered.instance.fetch_observations(dg.AssetKey([SERVICE, "prod"]), limit=1).records[0]
    recorded = observation.asset_observation.metadata
    assert recorded["event"].value == "deploy_failed"
    assert recorded["attempted_version"].value == new_version
    assert "RECS_SIGNING_KEY is required in prod" in recorded["log_tail"].value
    # The run failed, but prod is not down: its newest record restates what serves, checked again,
    # and the non-blocking `last_deploy` check (a warning, not an error) says why nothing changed.
    kept = delivered.latest(f"{SERVICE}/prod")
    assert (kept["kept"], kept["healthy"], kept["attempted_version"]) == (True, True, new_version)
    assert kept["dagster/last_updated_timestamp"] < observation.timestamp - 1, "the kept version's time, not now"
    [last_deploy] = [e for e in result.get_asset_check_evaluations()
                     if (e.asset_key.to_user_string(), e.check_name) == (f"{SERVICE}/prod", "last_deploy")]
    assert not last_deploy.passed and last_deploy.severity == dg.AssetCheckSeverity.WARN
    assert "RECS_SIGNING_KEY is required in prod" in last_deploy.description
    assert f"prod keeps serving {old['version']}" in last_deploy.description
    assert checks(result)[f"{SERVICE}/prod:healthy"] is True


def test_wrong_app_path_fails_the_build_naming_the_field(platform: Platform) -> None:
    spec = platform.catalog / SERVICE / "deliverable.yaml"
    spec.write_text(spec.read_text().replace("recommendations_api.app:app", "recommendations_api.api:app"))

    result = platform.materialize(f"{SERVICE}/build")

    assert not result.success
    message = result.failure_data_for_node("recommendations_api__build").error.message
    assert "could not be built" in message and "No module named 'recommendations_api.api'" in message
    assert "Check field 'service.app' (recommendations_api.api:app)" in message and str(spec) in message
    [failed] = history_json(SERVICE)
    assert (failed["asset"], failed["event"]) == (f"{SERVICE}/build", "build_failed")
    assert failed["detail"].startswith("recommendations-api could not be built")
    assert "Check field 'service.app'" in failed["detail"]
    reader_gone = subprocess.Popen([sys.executable, "-m", "platform_assets.cli", "history", SERVICE],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader_gone.stdout.close()  # like `| head` exiting before the history is written
    assert reader_gone.wait(timeout=60) == 0 and b"Traceback" not in reader_gone.stderr.read()


def history_json(name: str) -> list[dict]:
    completed = cli("history", name, "--json")
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_version_unhealthy_after_start_is_rolled_back_automatically(delivered: Platform) -> None:
    """Starts healthy, then its health check fails: staging goes back to the last healthy version,
    the run fails, and both the failure and the restore are in the event log (and `deliver history`)."""
    good = delivered.latest(f"{SERVICE}/staging")["version"]
    edit(delivered, "src/recommendations_api/app.py", "def health() -> Health:\n",
         "def health() -> Health:\n    HEALTH_CALLS.append(1)\n    if len(HEALTH_CALLS) > 1:\n"
         "        raise HTTPException(status_code=503, detail='degraded after start')\n")
    edit(delivered, "src/recommendations_api/app.py", "RETENTION_THRESHOLD = 0.5\n",
         "RETENTION_THRESHOLD = 0.5\nHEALTH_CALLS: list[int] = []\n")

    result = delivered.materialize(f"{SERVICE}/build", f"{SERVICE}/evaluate", f"{SERVICE}/staging")

    bad = delivered.latest(f"{SERVICE}/build")["version"]
    assert not result.success and bad != good
    failure = result.failure_data_for_node("recommendations_api__staging").error.message
    assert f"{bad} deployed to staging but is not healthy" in failure and f"rolled back to {good}" in failure
    restored = delivered.latest(f"{SERVICE}/staging")
    assert (restored["version"], restored["rollback_from"], restored["trigger"], restored["healthy"]) == (
        good, bad, "auto-rollback", True)
    assert health(restored["url"])["version"] == good
    [unhealthy] = delivered.instance.fetch_observations(dg.AssetKey.from_user_string(f"{SERVICE}/staging"), 5).records
    assert unhealthy.asset_observation.metadata["attempted_version"].value == bad
    newest = history_json(SERVICE)[:2]
    assert [(e["event"], e["version"]) for e in newest] == [("rollback", good), ("deploy_unhealthy", bad)], newest


def test_rollback_and_promotion_runs_redeploy_recorded_versions_and_the_history_shows_them(
        delivered: Platform) -> None:
    """The runs `deliver rollback` and `deliver promote` submit (tags as the CLI sets them; the CLI's
    own submission is tested in test_governance.py), run here in-process."""
    first = delivered.latest(f"{SERVICE}/prod")["version"]
    edit(delivered, "src/recommendations_api/app.py", 'version="1.3.0"', 'version="1.3.1"')
    assert delivered.materialize(*THROUGH_PROD).success
    second = delivered.latest(f"{SERVICE}/prod")["version"]
    prod = [dg.AssetKey([SERVICE, "prod"])]

    rolled = delivered.run_request(dg.RunRequest(asset_selection=prod, tags={
        ROLLBACK_TAG: first, TRIGGER_TAG: "cli-rollback"}))
    back = delivered.latest(f"{SERVICE}/prod")
    never = cli("rollback", SERVICE, "--env", "prod", "--to", "0000000")
    promoted = delivered.run_request(dg.RunRequest(asset_selection=prod, tags={TRIGGER_TAG: "cli-promote"}))
    again = delivered.latest(f"{SERVICE}/prod")

    assert rolled.success, rolled.all_events
    assert (back["version"], back["rollback_from"], back["trigger"], back["healthy"]) == (
        first, second, "cli-rollback", True)
    assert never.returncode == 2 and "0000000 was never healthy in prod" in never.stderr
    assert promoted.success
    assert (again["version"], again["trigger"]) == (second, "cli-promote")
    assert health(again["url"])["version"] == second
    trail = [(e["asset"], e["event"], e["version"]) for e in history_json(SERVICE)]
    assert trail[:3] == [(f"{SERVICE}/prod", "deploy", second), (f"{SERVICE}/prod", "rollback", first),
                         (f"{SERVICE}/prod", "deploy", second)], trail
    assert (f"{SERVICE}/evaluate", "evaluate", first) in trail and (f"{SERVICE}/build", "build", first) in trail
    assert f"rollback       {first}" in cli("history", SERVICE).stdout


def test_a_materialization_reported_by_hand_does_not_erase_the_gate_baseline(delivered: Platform) -> None:
    """The UI's "Report materialization" writes a metadata-less event outside any run: it is not a
    record, so `api_compatibility` still compares against what prod runs."""
    serving = delivered.latest(f"{SERVICE}/prod")["version"]
    delivered.instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=dg.AssetKey([SERVICE, "prod"])))
    edit(delivered, "src/recommendations_api/app.py", "    name: str\n", "    title: str\n")
    edit(delivered, "src/recommendations_api/app.py", "name=PRODUCTS[pid]", "title=PRODUCTS[pid]")

    result = delivered.materialize(f"{SERVICE}/build", f"{SERVICE}/evaluate")

    assert checks(result)[f"{SERVICE}/evaluate:api_compatibility"] is False
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "api_compatibility"]
    assert evaluation.metadata["baseline_version"].value == serving
    [row] = status_json()
    assert row["versions"]["prod"] == serving, "status shows the record, not the hand-written event"
    assert [e["event"] for e in history_json(SERVICE)].count("ignored") == 1


def test_a_version_unhealthy_in_staging_cannot_be_materialized_into_prod(platform: Platform) -> None:
    """Its first staging deploy comes up, then fails `healthy`; nothing healthy ran there before,
    so it stays recorded as unhealthy, and selecting prod on its own does not promote it."""
    edit(platform, "src/recommendations_api/app.py", "def health() -> Health:\n",
         "def health() -> Health:\n    HEALTH_CALLS.append(1)\n    if len(HEALTH_CALLS) > 1:\n"
         "        raise HTTPException(status_code=503, detail='degraded after start')\n")
    edit(platform, "src/recommendations_api/app.py", "RETENTION_THRESHOLD = 0.5\n",
         "RETENTION_THRESHOLD = 0.5\nHEALTH_CALLS: list[int] = []\n")
    platform.materialize(f"{SERVICE}/build", f"{SERVICE}/evaluate", f"{SERVICE}/staging")
    staging = platform.latest(f"{SERVICE}/staging")

    result = platform.materialize(f"{SERVICE}/prod")

    assert staging["healthy"] is False
    assert not result.success
    message = result.failure_data_for_node("recommendations_api__prod").error.message
    assert f"{staging['version']} is not healthy in staging" in message
    assert platform.instance.get_latest_materialization_event(dg.AssetKey([SERVICE, "prod"])) is None


SLO = """
slo:
  error_ratio_max: 0.01
  p95_ms_max: 300
  window_s: 2
  smoke:
    - {method: GET, path: /recommendations/c-1, expect_status: 200}
    - {method: GET, path: /health}
"""


def test_a_version_that_breaches_its_slo_after_the_switch_is_rolled_back_with_the_figures(platform: Platform) -> None:
    """The verification window drives the smoke requests and reads the wrapper's metrics: the good
    version holds its SLO, the next one answers 500 once deployed and goes back, figures recorded."""
    spec = platform.catalog / SERVICE / "deliverable.yaml"
    spec.write_text(spec.read_text() + SLO)
    stages = (f"{SERVICE}/build", f"{SERVICE}/evaluate", f"{SERVICE}/staging")
    assert platform.materialize(*stages).success
    good = platform.latest(f"{SERVICE}/staging")
    edit(platform, "src/recommendations_api/app.py", "-> Recommendations:\n",
         "-> Recommendations:\n    if os.environ.get('PLATFORM_ENVIRONMENT') == 'staging':\n"
         "        raise RuntimeError('the staging catalog is unreachable')\n")

    result = platform.materialize(*stages)

    held = good["slo"]
    assert held["breaches"] == [] and held["requests"] >= 10 and held["error_ratio"] == 0, held
    bad = platform.latest(f"{SERVICE}/build")["version"]
    assert not result.success
    restored = platform.latest(f"{SERVICE}/staging")
    assert (restored["version"], restored["rollback_from"], restored["trigger"]) == (good["version"], bad,
                                                                                    "auto-rollback")
    assert health(restored["url"])["version"] == good["version"]
    [unhealthy] = [r.asset_observation.metadata for r in platform.instance.fetch_observations(
        dg.AssetKey([SERVICE, "staging"]), 5).records]
    breached = unhealthy["slo"].value
    assert unhealthy["event"].value == "deploy_unhealthy" and unhealthy["attempted_version"].value == bad
    assert breached["error_ratio"] == 1.0 and breached["requests"] >= 10, breached
    assert any(b.startswith("error ratio 1.0000 > 0.01") for b in breached["breaches"])
    assert any(b.startswith("GET /recommendations/c-1 answered 500") for b in breached["breaches"])
    assert "SLO breached" in unhealthy["reason"].value
    [latest_check] = platform.instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey([SERVICE, "staging"]), "healthy"), limit=1)
    check = latest_check.event.asset_check_evaluation
    assert check.passed, "the environment serves the restored version, healthy"
    assert f"restored: {bad} was not healthy" in check.description and "SLO breached" in check.description
    assert check.metadata["rolled_back"].value["slo"] == breached, "the attempt's figures are on the check"
