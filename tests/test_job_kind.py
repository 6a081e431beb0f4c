"""The batch-job kind without a delivery: its spec's errors name the field, its output table is a
claim no dataset may share, and each environment gets its check, job and schedule, which skips
while nothing is deployed there."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import yaml

from platform_assets.catalog import load_catalog
from platform_assets.code_location import build_definitions
from platform_assets.kinds.job.handler import SCHEDULED_RUN
from platform_assets.kinds.job.schedule import job_name
from platform_assets.records import env_key
from platform_assets.settings import PROJECT_ROOT, load_settings
from tests.conftest import copy_deliverable

SETTINGS = load_settings(PROJECT_ROOT / "platform.yaml")


def job_spec(**job: object) -> dict:
    return {"name": "scores", "kind": "job", "owner": "ml-team", "description": "scores things",
            "job": {"entrypoint": "scores.job:run", "schedule": "0 2 * * *", "output": "scores", **job}}


def errors_of(tmp_path: Path, *specs: dict) -> list[tuple[str, str]]:
    for spec in specs:
        folder = tmp_path / spec["name"]
        folder.mkdir()
        (folder / "deliverable.yaml").write_text(yaml.safe_dump(spec))
    return [(error.field, error.message) for error in load_catalog(tmp_path, SETTINGS).errors]


@pytest.mark.parametrize(("job", "field", "message"), [
    ({"schedule": "every night"}, "job.schedule", "cron"),
    ({"output": "Churn Scores"}, "job.output", "should match pattern"),
    ({"entrypoint": "scores.job"}, "job.entrypoint", "should match pattern"),
    ({"source": "../elsewhere"}, "job.source", "outside"),
])
def test_a_malformed_job_spec_names_its_field(tmp_path: Path, job: dict, field: str, message: str) -> None:
    [(found, text)] = errors_of(tmp_path, job_spec(**job))
    assert found == field and message in text, (found, text)


def test_a_job_may_not_write_a_table_a_dataset_publishes_in_its_namespace(tmp_path: Path) -> None:
    dataset = {"name": "features", "kind": "dataset", "owner": "ml-team", "description": "features",
               "dataset": {"models": ["customer_features"]}}
    errors = errors_of(tmp_path, dataset, job_spec(output="customer_features"))
    assert any("the published table 'customer_features' of team 'ml-team'" in message for _, message in errors), errors


def test_each_environment_has_a_schedule_that_waits_for_a_deployed_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = tmp_path / "catalog"
    copy_deliverable("churn-scoring", catalog, standalone=True)
    monkeypatch.setenv("PLATFORM_CATALOG_DIR", str(catalog))
    monkeypatch.setenv("PLATFORM_STATE_DIR", str(tmp_path / "state"))
    defs = build_definitions(load_settings())
    for env in ("staging", "prod"):
        job = defs.resolve_job_def(job_name("churn-scoring", env))
        [check] = job.asset_layer.asset_graph.asset_check_keys
        assert check == dg.AssetCheckKey(env_key("churn-scoring", env), SCHEDULED_RUN)
        schedule = defs.resolve_schedule_def(f"{job.name}_schedule")
        assert schedule.cron_schedule == "0 2 * * *" and schedule.execution_timezone == "UTC"
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
        with dg.instance_for_test() as instance, dg.build_schedule_context(
                instance=instance, scheduled_execution_time=datetime(2026, 12, 4, 2, tzinfo=UTC)) as context:
            data = schedule.evaluate_tick(context)
        assert not data.run_requests and f"nothing of churn-scoring is deployed in {env}" in data.skip_message
