"""`deliver run`: one command delivers a deliverable with what it lacks, and says why a stage failed."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from platform_assets.catalog import load_catalog
from platform_assets.delivery_run import plan
from platform_assets.errors import ActionRefused
from platform_assets.records import env_key
from platform_assets.settings import catalog_dir
from tests.conftest import Platform, cli, model_platform, record_deploy

SERVICE = "recommendations-api"


def test_plan_delivers_first_the_upstreams_that_have_nothing_in_prod(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    platform = model_platform(tmp_path, monkeypatch)
    catalog = load_catalog(catalog_dir(platform.settings), platform.settings)

    def planned(**kwargs: str) -> list[tuple[str, str]]:
        return [(s.key.to_user_string(), s.reason) for s in plan(platform.instance, catalog, platform.settings,
                                                                   SERVICE, **kwargs)]

    fresh = planned()
    record_deploy(platform.instance, "customer-features", "prod", "f1")
    features_there = planned(through="staging")

    assert [key for key, _ in fresh] == [f"{name}/{stage}" for name in ("customer-features", "churn-model", SERVICE)
                                         for stage in ("build", "evaluate", "staging", "prod")]
    assert dict(fresh)["customer-features/prod"] == "needed by churn-model"
    assert dict(fresh)["churn-model/build"] == f"needed by {SERVICE}"
    assert features_there == [*((f"churn-model/{s}", f"needed by {SERVICE}") for s in ("build", "evaluate", "staging",
                                                                                          "prod")),
                              *((f"{SERVICE}/{s}", "asked") for s in ("build", "evaluate", "staging"))]
    with pytest.raises(ActionRefused, match="--through qa: no such environment; valid: staging, prod"):
        planned(through="qa")
    platform.instance.dispose()


def test_a_failed_gate_is_reported_with_its_reason_and_leaves_the_environments_alone(platform: Platform) -> None:
    """The second delivery breaks the contract: the terminal shows the breaking change and the fix in
    one screen, no stack trace, and no environment is planned in a run that fails before it."""
    first = cli("run", SERVICE)
    version = platform.latest(f"{SERVICE}/prod")["version"]
    app = platform.catalog / SERVICE / "src/recommendations_api/app.py"
    app.write_text(app.read_text().replace("    name: str\n", "    title: str\n")
                   .replace("name=PRODUCTS[pid]", "title=PRODUCTS[pid]"))

    broken = cli("run", SERVICE)

    assert first.returncode == 0, first.stdout + first.stderr
    assert f"{SERVICE}/prod  ok  prod serves {version}, healthy" in first.stdout
    assert broken.returncode == 1
    output = broken.stdout + broken.stderr
    assert "Traceback" not in output and len(output.splitlines()) < 15, output
    assert f"{SERVICE}/evaluate  FAILED" in broken.stdout and "gates failed: api_compatibility" in broken.stdout
    assert f"FAIL api_compatibility: 1 breaking change(s) against {version} in prod" in broken.stdout
    assert "field 'items[].name' removed" in broken.stdout
    assert "bump the major version of info.version" in broken.stdout
    assert f"... {SERVICE}/staging" not in broken.stdout
    staging = env_key(SERVICE, "staging")
    [entry] = [r.asset_entry for r in platform.instance.get_asset_records([staging])]
    assert entry.last_run_id == entry.last_materialization.run_id, "staging's latest run is its last deploy"
    assert platform.latest(f"{SERVICE}/staging")["version"] == version


def test_run_names_an_unknown_deliverable(platform: Platform) -> None:
    completed = cli("run", "recommendations")
    assert completed.returncode == 2
    assert "no deliverable 'recommendations'" in completed.stderr and SERVICE in completed.stderr
    assert dg.DagsterInstance.get().get_runs() == []
