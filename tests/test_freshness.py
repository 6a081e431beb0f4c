"""Freshness in prod, on a real instance: datasets by their spec's age of data, scheduled notebook
reports by their schedule plus a grace, run by one sensor."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import dagster as dg
import yaml

from platform_assets.catalog import load_catalog
from platform_assets.code_location import build_definitions
from platform_assets.freshness import FRESH_UNTIL, FRESHNESS_SENSOR, REPORT_CHECK, report_schedule_result
from platform_assets.records import LAST_UPDATED, build_key, env_key
from platform_assets.settings import catalog_dir
from tests.conftest import Platform, copy_deliverable, record_from_a_run

FEATURES, SEGMENTS = "customer-features", "customer-segments"


def run_checks(platform: Platform, checks: list[dg.AssetChecksDefinition]) -> dict[str, dg.AssetCheckEvaluation]:
    """What the freshness sensor's run does: execute the checks alone."""
    job = dg.define_asset_job("freshness", selection=dg.AssetSelection.checks(*checks))
    result = dg.Definitions(asset_checks=checks, jobs=[job]).resolve_job_def("freshness").execute_in_process(
        instance=platform.instance)
    return {e.asset_key.path[0]: e for e in result.get_asset_check_evaluations()}


def test_prod_freshness_of_datasets_follows_the_age_of_their_data(datasets: Platform) -> None:
    spec = datasets.catalog / SEGMENTS / "deliverable.yaml"
    spec.write_text(spec.read_text().replace("max_age_hours: 24", "max_age_hours: 6"))
    delivered = datasets.materialize(*(f"{FEATURES}/{stage}" for stage in ("build", "evaluate", "staging", "prod")))
    assert delivered.success, [e for e in delivered.all_events if e.is_failure]
    published = datasets.latest(f"{FEATURES}/prod")
    # customer-segments: published once, with data loaded 7 hours ago (its spec allows 6)
    record_from_a_run(datasets.instance, env_key(SEGMENTS, "prod"), {
        "version": "s1", "healthy": True, LAST_UPDATED: dg.MetadataValue.timestamp(time.time() - 7 * 3600)})
    defs = build_definitions(datasets.settings)
    # The freshness sensor's checks (live and drift have sensors and schedules of their own)
    checks = [c for c in defs.asset_checks if {k.name for k in c.check_keys} <= {"freshness_check", REPORT_CHECK}]
    sensor = defs.resolve_sensor_def(FRESHNESS_SENSOR)

    first = sensor(dg.build_sensor_context(instance=datasets.instance, definitions=defs))
    results = run_checks(datasets, checks)
    after = sensor(dg.build_sensor_context(instance=datasets.instance, definitions=defs))

    assert len(checks) == 2, "one check definition per distinct max_age_hours"
    assert time.time() - 600 < published[LAST_UPDATED] <= time.time(), "the data's loaded_at, not a guess"
    assert {key.asset_key.to_user_string() for key in first.asset_check_keys} == {f"{FEATURES}/prod",
                                                                                  f"{SEGMENTS}/prod"}
    assert results[FEATURES].passed and results[FEATURES].severity == dg.AssetCheckSeverity.WARN
    assert not results[SEGMENTS].passed
    # Dagster words the age to the second ("7 hours, 1 second ago" on a slow machine)
    assert "overdue" in results[SEGMENTS].description and "last update was 7 hours" in results[SEGMENTS].description
    assert isinstance(after, dg.SkipReason), "fresh until its data can be 24h old; stale until republished"


def test_a_report_older_than_its_schedule_and_grace_is_flagged(platform: Platform) -> None:
    copy_deliverable("segmentation-report", platform.catalog)
    copy_deliverable(SEGMENTS, platform.catalog)
    spec_file = platform.catalog / "segmentation-report" / "deliverable.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["schedule"] = "0 6 * * *"
    spec["notebook"]["schedule_grace"] = "1h"
    spec_file.write_text(yaml.safe_dump(spec))
    [notebook] = [d for d in load_catalog(catalog_dir(platform.settings), platform.settings)
                  if d.name == "segmentation-report"]
    published = datetime(2026, 3, 2, 6, 10, tzinfo=UTC)
    before = report_schedule_result(platform.instance, notebook, "prod", published)
    record_from_a_run(platform.instance, env_key(notebook.name, "prod"), {
        "version": "r1", "healthy": True, LAST_UPDATED: dg.MetadataValue.timestamp(published.timestamp())})

    in_grace = report_schedule_result(platform.instance, notebook, "prod", datetime(2026, 3, 3, 6, 59, tzinfo=UTC))
    late = report_schedule_result(platform.instance, notebook, "prod", datetime(2026, 3, 3, 7, 1, tzinfo=UTC))
    record_from_a_run(platform.instance, build_key(notebook.name), {"version": "r1", "reused": True})
    rebuilt_unchanged = report_schedule_result(platform.instance, notebook, "prod", datetime.now(UTC))
    defs = build_definitions(platform.settings)

    assert not before.passed and "no report in prod yet" in before.description
    assert in_grace.passed
    assert in_grace.metadata[FRESH_UNTIL].value == datetime(2026, 3, 3, 7, 0, tzinfo=UTC).timestamp()
    assert not late.passed and late.severity == dg.AssetCheckSeverity.WARN
    assert "stale" in late.description and "due at 2026-03-03 06:00 UTC" in late.description
    assert "deliver run segmentation-report" in late.description
    assert rebuilt_unchanged.passed, "a scheduled run that rebuilt the same version confirms the report"
    [spec_of_check] = [s for c in defs.asset_checks for s in c.check_specs if s.name == REPORT_CHECK]
    assert spec_of_check.asset_key == env_key(notebook.name, "prod") and not spec_of_check.blocking
