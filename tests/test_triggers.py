"""The trigger sensors' ticks: source changes, upstream publications and cron schedules.

Each tick is the plain function the sensor calls, run on a real catalog folder and a real Dagster
instance; the first tick of each only records a baseline.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import yaml

from platform_assets.catalog import Catalog, load_catalog
from platform_assets.records import build_key, evaluate_key
from platform_assets.settings import PlatformSettings, load_settings
from sensors.triggers import schedule_tick, source_tick, upstream_tick
from tests.conftest import copy_deliverable, record_deploy

SERVICE, MODEL, FEATURES = "recommendations-api", "churn-model", "customer-features"


@pytest.fixture
def settings() -> PlatformSettings:
    return load_settings()


def catalog_of(root: Path, settings: PlatformSettings, *names: str, changes: dict[str, dict] | None = None) -> Catalog:
    """The demo deliverables `names` in `root`, with `changes` (name -> fields) applied to their specs."""
    for name in names:
        copy_deliverable(name, root)
    for name, fields in (changes or {}).items():
        path = root / name / "deliverable.yaml"
        path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **fields}))
    catalog = load_catalog(root, settings)
    assert not catalog.errors, catalog.errors
    return catalog


def test_a_source_change_requests_one_delivery_of_that_version(tmp_path, settings) -> None:
    catalog = catalog_of(tmp_path, settings, SERVICE, MODEL, FEATURES)
    baseline, cursor = source_tick(catalog, settings, None)
    unchanged, cursor = source_tick(catalog, settings, cursor)
    app = tmp_path / SERVICE / "src" / "recommendations_api" / "app.py"
    app.touch()
    touched, cursor = source_tick(catalog, settings, cursor)
    app.write_text(app.read_text() + "\n# a developer's change\n")
    changed, cursor = source_tick(catalog, settings, cursor)
    again, _ = source_tick(catalog, settings, cursor)

    assert baseline == unchanged == touched == again == [], "same content, no request"
    [request] = changed
    assert request.run_key.startswith(f"source:{SERVICE}:") and request.tags["platform/trigger"] == "source-change"
    assert request.asset_selection == [build_key(SERVICE), evaluate_key(SERVICE)]


def test_a_version_published_to_the_last_environment_redelivers_downstream(tmp_path, settings) -> None:
    catalog = catalog_of(tmp_path, settings, SERVICE, MODEL, FEATURES)
    with dg.instance_for_test() as instance:
        record_deploy(instance, FEATURES, "prod", "f1")
        baseline, cursor = upstream_tick(instance, catalog, settings, None)
        record_deploy(instance, FEATURES, "staging", "f2")
        staged_only, cursor = upstream_tick(instance, catalog, settings, cursor)
        record_deploy(instance, FEATURES, "prod", "f2")
        published, cursor = upstream_tick(instance, catalog, settings, cursor)
        repeated, cursor = upstream_tick(instance, catalog, settings, cursor)
        record_deploy(instance, MODEL, "prod", "7", healthy=False)
        unhealthy, _ = upstream_tick(instance, catalog, settings, cursor)

    assert baseline == staged_only == repeated == unhealthy == []
    assert [(r.run_key, r.tags["platform/upstream"]) for r in published] == [
        (f"upstream:{MODEL}:{FEATURES}:f2", f"{FEATURES}@f2")]
    assert published[0].asset_selection == [build_key(MODEL), evaluate_key(MODEL)]


def test_a_cron_schedule_rebuilds_once_per_due_time(tmp_path, settings) -> None:
    catalog = catalog_of(tmp_path, settings, MODEL, FEATURES, changes={MODEL: {"schedule": "0 * * * *"}})
    at = [datetime(2026, 12, 1, h, m, tzinfo=UTC) for h, m in ((10, 30), (10, 50), (13, 5), (13, 10))]

    baseline, cursor = schedule_tick(catalog, None, at[0])
    not_due, cursor = schedule_tick(catalog, cursor, at[1])
    due, cursor = schedule_tick(catalog, cursor, at[2])
    after, _ = schedule_tick(catalog, cursor, at[3])

    assert baseline == not_due == after == []
    assert [r.run_key for r in due] == [f"schedule:{MODEL}:2026-12-01T13:00"], "missed ticks collapse into one"
    assert due[0].tags["platform/trigger"] == "schedule"


def test_a_malformed_schedule_names_the_file_and_field(tmp_path, settings) -> None:
    copy_deliverable(MODEL, tmp_path, standalone=True)
    spec = tmp_path / MODEL / "deliverable.yaml"
    spec.write_text(spec.read_text() + "schedule: '61 * * * *'\n")

    [error] = load_catalog(tmp_path, settings).errors

    assert error.field == "schedule" and error.file == spec and "not a cron expression" in error.message
