"""The batch-job kind end to end on the demo's churn-scoring: built with its tests and a dry run on a
sample (calling the staging model), gated, delivered to staging and prod, then run by its prod
schedule as a Dagster run of the environment's `scheduled_run` check: one score per customer in
the prod warehouse, from the prod model; a run that fails shows on `churn-scoring/prod`."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import duckdb
import pytest

from platform_assets.catalog import load_catalog
from platform_assets.code_location import build_definitions
from platform_assets.kinds.job.handler import SCHEDULED_RUN
from platform_assets.kinds.job.schedule import job_name
from platform_assets.records import env_key
from platform_assets.status import NO_RUN, collect_status, format_table
from resources.local_process import LocalProcessTarget
from tests.conftest import Platform, copy_deliverable

JOB, MODEL = "churn-scoring", "churn-model"
STAGES = ("build", "evaluate", "staging", "prod")
TICK = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)


def deliver(platform: Platform, name: str) -> None:
    result = platform.materialize(*(f"{name}/{stage}" for stage in STAGES))
    assert result.success, [e.message for e in result.all_events if e.is_failure]


def tick(platform: Platform, env: str, when: datetime) -> dg.ExecuteInProcessResult | dg.SkipReason:
    """What the daemon does when the schedule of `env` comes due: evaluate it, run what it asks."""
    defs = build_definitions(platform.settings)
    schedule = defs.resolve_schedule_def(f"{job_name(JOB, env)}_schedule")
    with dg.build_schedule_context(instance=platform.instance, scheduled_execution_time=when) as context:
        data = schedule.evaluate_tick(context)
    if not data.run_requests:
        return dg.SkipReason(data.skip_message)
    [request] = data.run_requests
    assert request.run_key == f"{JOB}:{env}:{when.isoformat()}"
    return defs.resolve_job_def(job_name(JOB, env)).execute_in_process(
        instance=platform.instance, tags=dict(request.tags), raise_on_error=False)


def last_run(platform: Platform, env: str) -> dg.AssetCheckEvaluation:
    [record] = platform.instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(env_key(JOB, env), SCHEDULED_RUN), limit=1)
    return record.event.asset_check_evaluation


def warehouse(platform: Platform, sql: str) -> list[tuple]:
    with duckdb.connect(str(platform.home / "platform" / "warehouse.duckdb"), read_only=True) as db:
        return db.sql(sql).fetchall()


@pytest.mark.slow
def test_churn_scoring_runs_on_schedule_in_prod_and_a_failed_run_shows(models: Platform) -> None:
    copy_deliverable(JOB, models.catalog)
    assert isinstance(tick(models, "prod", TICK), dg.SkipReason), "nothing deployed: the schedule skips"
    deliver(models, MODEL)
    deliver(models, JOB)

    evaluate = models.latest(f"{JOB}/evaluate")
    build = models.latest(f"{JOB}/build")
    assert build["dry_run_rows"] == 200 and build["tests_passed"] == 2, build
    assert evaluate["version"] == build["version"]
    assert models.latest(f"{JOB}/prod")["output"] == "prod_ml_team.churn_scores"

    run = tick(models, "prod", TICK)
    assert run.success, [e.message for e in run.all_events if e.is_failure]
    customers = warehouse(models, "select count(*), count(distinct customer_id) from prod_analytics.customer_features")
    scores = warehouse(models, "select count(*), count(distinct customer_id), min(churn_probability), "
                               "max(churn_probability), min(model_version), max(model_version) "
                               "from prod_ml_team.churn_scores")
    prod_model = models.current(MODEL, "prod")["version"]
    assert scores[0][:2] == customers[0] and customers[0][0] > 1000, (scores, customers)
    assert 0 <= scores[0][2] < scores[0][3] <= 1
    assert scores[0][4] == scores[0][5] == str(prod_model), "scored by the prod model"
    check = last_run(models, "prod")
    assert check.passed and check.metadata["rows"].value == customers[0][0]
    assert models.instance.get_run_by_id(run.run_id).tags["platform/scheduled_for"] == TICK.isoformat()

    LocalProcessTarget(environment="prod").stop(MODEL)  # the model it calls is down: the next run fails
    failed = tick(models, "prod", TICK.replace(day=5))
    assert not failed.success
    check = last_run(models, "prod")
    assert not check.passed
    assert "failed in prod" in check.description and "URLError" in check.description, check.description
    assert "Connection refused" in check.metadata["output_tail"].value
    after = warehouse(models, "select count(*), min(model_version) from prod_ml_team.churn_scores")
    assert after[0] == (customers[0][0], str(prod_model)), "the last good run's rows are kept"

    [status] = collect_status(models.instance, load_catalog(models.catalog, models.settings), models.settings, JOB)
    assert status.environments["prod"].last_run.startswith("last run FAILED at "), status.environments["prod"]
    assert status.environments["staging"].last_run == NO_RUN and status.endpoint == "prod_ml_team.churn_scores"
    assert "URLError" in format_table([status], models.settings.environment_names)
