"""The promotion sensor, approvals, history and rollback against a real Dagster instance.

Deploys are recorded the way `run_deploy` records them (materializations with `version` and
`healthy`), so the sensor's decisions are tested on the event log it reads in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from platform_assets.catalog import Catalog, load_catalog
from platform_assets.cli import main
from platform_assets.delivery_actions import approve, history, rollback_target
from platform_assets.errors import ActionRefused
from platform_assets.settings import PlatformSettings, load_settings
from platform_assets.stages import env_key, evaluate_key
from sensors.promotion import promotion_sensor, promotion_tick
from tests.conftest import copy_deliverable
from tests.conftest import record_deploy as deployed

SERVICE, MODEL = "recommendations-api", "churn-model"


@pytest.fixture
def settings() -> PlatformSettings:
    return load_settings()


@pytest.fixture
def catalog(tmp_path: Path, settings: PlatformSettings) -> Catalog:
    """The demo service with a manual prod (approver alice) and the demo model on auto."""
    copy_deliverable(SERVICE, tmp_path, standalone=True)
    copy_deliverable(MODEL, tmp_path, standalone=True)
    spec_path = tmp_path / SERVICE / "deliverable.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["promotion"] = {"staging": {"mode": "auto"}, "prod": {"mode": "manual", "approvers": ["alice"]}}
    spec_path.write_text(yaml.safe_dump(spec))
    return load_catalog(tmp_path, settings)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def tick(instance: dg.DagsterInstance, catalog: Catalog, settings: PlatformSettings,
         cursor: str | None) -> tuple[list[dg.RunRequest], str | None]:
    sensor = promotion_sensor(catalog, settings)
    result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    return list(result.run_requests or []), result.cursor


def test_two_ticks_over_the_same_state_request_nothing_twice(instance, catalog, settings) -> None:
    deployed(instance, MODEL, "staging", "3")

    first, cursor = tick(instance, catalog, settings, None)
    second, cursor = tick(instance, catalog, settings, cursor)

    assert [(r.run_key, r.asset_selection) for r in first] == [
        (f"promote:{MODEL}:3:prod", [env_key(MODEL, "prod")])]
    assert first[0].tags["platform/trigger"] == "promotion"
    assert second == []
    deployed(instance, MODEL, "staging", "4")
    third, _ = tick(instance, catalog, settings, cursor)
    assert [r.run_key for r in third] == [f"promote:{MODEL}:4:prod"], "a new healthy version moves on"


def test_an_environment_a_running_run_is_about_to_deploy_is_left_to_it(instance, catalog, settings) -> None:
    deployed(instance, MODEL, "staging", "8")
    run = dg.DagsterRun(job_name="__ASSET_JOB", status=dg.DagsterRunStatus.STARTED,
                        asset_selection=frozenset({env_key(MODEL, "staging"), env_key(MODEL, "prod")}))
    instance.add_run(run)

    waiting, cursor = tick(instance, catalog, settings, None)
    instance.report_run_failed(run)
    after, _ = tick(instance, catalog, settings, cursor)

    assert waiting == [] and [r.run_key for r in after] == [f"promote:{MODEL}:8:prod"]


def test_only_healthy_versions_not_yet_there_move(instance, catalog, settings) -> None:
    deployed(instance, MODEL, "staging", "5", healthy=False)
    assert tick(instance, catalog, settings, None)[0] == []
    deployed(instance, MODEL, "staging", "6")
    deployed(instance, MODEL, "prod", "6")
    assert tick(instance, catalog, settings, None)[0] == [], "prod already runs it"


def test_manual_policy_waits_for_an_approver(instance, catalog, settings) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=evaluate_key(SERVICE), metadata={"version": "abc", "gates_passed": True}))
    deployed(instance, SERVICE, "staging", "abc")

    waiting, cursor = tick(instance, catalog, settings, None)
    with pytest.raises(ActionRefused, match=r"mallory is not an approver of recommendations-api for prod"):
        approve(instance, catalog, settings, SERVICE, "abc", "prod", "mallory")
    with pytest.raises(ActionRefused, match=r"recommendations-api zzz is not what staging holds \(abc\)"):
        approve(instance, catalog, settings, SERVICE, "zzz", "prod", "alice")
    refused, cursor = tick(instance, catalog, settings, cursor)
    approval = approve(instance, catalog, settings, SERVICE, "abc", "prod", "alice")
    approved, cursor = tick(instance, catalog, settings, cursor)
    again, _ = tick(instance, catalog, settings, cursor)

    assert waiting == refused == again == []
    assert [r.run_key for r in approved] == [f"promote:{SERVICE}:abc:prod"]
    [observation] = instance.fetch_observations(env_key(SERVICE, "prod"), limit=5).records
    recorded = {k: v.value for k, v in observation.asset_observation.metadata.items()}
    assert recorded == approval and recorded["approved_by"] == "alice" and recorded["version"] == "abc"
    with pytest.raises(ActionRefused, match=r"promotion.staging is auto"):
        approve(instance, catalog, settings, SERVICE, "abc", "staging", "alice")


def test_rollback_picks_the_last_healthy_version_and_history_lists_everything(instance, catalog, settings) -> None:
    deployed(instance, MODEL, "prod", "1")
    deployed(instance, MODEL, "prod", "2", healthy=False)
    deployed(instance, MODEL, "prod", "3")

    assert rollback_target(instance, MODEL, "prod", None) == "1", "2 was never healthy"
    assert rollback_target(instance, MODEL, "prod", "1") == "1"
    with pytest.raises(ActionRefused, match="churn-model 2 was never healthy in prod"):
        rollback_target(instance, MODEL, "prod", "2")
    entries = history(instance, settings, MODEL)
    assert [(e.event, e.version, e.detail) for e in entries] == [
        ("deploy", "3", "healthy"), ("deploy", "2", "UNHEALTHY"), ("deploy", "1", "healthy")]


def test_cli_approve_refuses_a_non_approver_with_exit_2(instance, catalog, settings, monkeypatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PLATFORM_CATALOG_DIR", str(catalog.root))
    monkeypatch.setenv("DAGSTER_HOME", instance.root_directory)
    deployed(instance, SERVICE, "staging", "abc")

    code = main(["approve", SERVICE, "--version", "abc", "--env", "prod", "--as", "mallory"])

    assert code == 2 and "refused: mallory is not an approver" in capsys.readouterr().err


def test_tick_over_a_thousand_deliverables_reads_the_instance_in_three_queries(
    instance, settings, tmp_path, monkeypatch
) -> None:
    """Counts queries, not seconds: the timing is `make bench` (benchmarks/bench_promotion.py)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from bench_catalog import teams_file, write_catalog

    root = write_catalog(tmp_path / "synthetic", 1000)
    monkeypatch.setenv("PLATFORM_TEAMS_FILE", str(teams_file(root)))
    catalog = load_catalog(root, settings)
    assert len(catalog) == 1000, catalog.errors[:3]
    calls = {"latest": 0, "records": 0, "runs": 0}
    latest, records, runs = instance.get_latest_materialization_events, instance.get_event_records, instance.get_runs

    def counted_latest(*args, **kwargs):
        calls["latest"] += 1
        return latest(*args, **kwargs)

    def counted_records(*args, **kwargs):
        calls["records"] += 1
        return records(*args, **kwargs)

    def counted_runs(*args, **kwargs):
        calls["runs"] += 1
        return runs(*args, **kwargs)

    instance.get_latest_materialization_events = counted_latest  # type: ignore[method-assign]
    instance.get_runs = counted_runs  # type: ignore[method-assign]
    instance.get_event_records = counted_records  # type: ignore[method-assign]
    promotions, _ = promotion_tick(instance, catalog, settings, None)
    assert promotions == [] and calls == {"latest": 1, "records": 1, "runs": 1}
