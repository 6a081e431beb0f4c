"""DORA's four figures from the event log: the arithmetic on known times, then a history written
to a real instance the way the stages write it, read back by `deliver metrics`."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from platform_assets.catalog import load_catalog
from platform_assets.cli import main
from platform_assets.delivery_metrics import ProdEvent, figures_of
from platform_assets.records import build_key, env_key
from platform_assets.settings import load_settings
from tests.conftest import copy_deliverable, record_from_a_run

H = 3600.0


def test_the_four_figures_from_known_times() -> None:
    changes = {("svc", "v1"): 0.0, ("svc", "v2"): 10 * H, ("svc", "v3"): 20 * H}
    events = [
        ProdEvent(2 * H, "svc", "deploy", "v1"),              # lead time 2 h
        ProdEvent(13 * H, "svc", "unhealthy", "v2", "run-2"),  # started, unhealthy: a change failure
        ProdEvent(13.5 * H, "svc", "rollback", "v1"),          # restored after 0.5 h; not a new deploy
        ProdEvent(21 * H, "svc", "failed_attempt", "v3"),     # never started: prod kept serving
        ProdEvent(24 * H, "svc", "deploy", "v3"),             # lead time 4 h
        ProdEvent(25 * H, "svc", "deploy", "v3"),             # a redeploy of v3: a deploy, no second lead time
    ]

    figures = figures_of("svc", events, changes, window_days=2)

    assert (figures.deploys, figures.deploys_per_day) == (3, 1.5)
    assert figures.lead_time_s == 3 * H, "median of 2 h and 4 h"
    assert figures.change_failure_rate == 0.25, "1 unhealthy of 4 deploys that started"
    assert figures.time_to_restore_s == 0.5 * H
    assert (figures.unhealthy_deploys, figures.failed_attempts) == (1, 1)


def observe_from_a_run(instance: dg.DagsterInstance, key: dg.AssetKey, metadata: dict) -> None:
    """An observation written by a run's step, as the deploy stage writes its failures."""

    @dg.op
    def _observe(context) -> None:  # unannotated: Dagster cannot read a postponed annotation
        context.log_event(dg.AssetObservation(asset_key=key, metadata=metadata))

    @dg.job
    def _job() -> None:
        _observe()

    assert _job.execute_in_process(instance=instance).success


@pytest.fixture
def history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dg.DagsterInstance:
    """The demo service and model in a catalog; the service's history: v1 built and shipped, v2
    shipped but unhealthy and rolled back to v1, v3 failing to start, then v3 shipped. The model
    was never delivered."""
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    copy_deliverable("recommendations-api", catalog, standalone=True)
    copy_deliverable("churn-model", catalog, standalone=True)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("PLATFORM_CATALOG_DIR", str(catalog))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dg.DagsterInstance.get()
    svc, prod = "recommendations-api", env_key("recommendations-api", "prod")
    for version in ("v1", "v2", "v3"):
        record_from_a_run(instance, build_key(svc), {"version": version})
    record_from_a_run(instance, prod, {"version": "v1", "healthy": True})
    observe_from_a_run(instance, prod, {"event": "deploy_unhealthy", "attempted_version": "v2"})
    record_from_a_run(instance, prod, {"version": "v1", "healthy": True, "rollback_from": "v2"})
    observe_from_a_run(instance, prod, {"event": "deploy_failed", "attempted_version": "v3"})
    record_from_a_run(instance, prod, {"version": "v3", "healthy": True})
    return instance


def test_deliver_metrics_over_a_recorded_history(history: dg.DagsterInstance,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    catalog = load_catalog(Path(history.root_directory).parent / "catalog", load_settings())
    created = {r.dagster_run.run_id: r.create_timestamp.timestamp() for r in history.get_run_records()}
    builds = {r.event_log_entry.asset_materialization.metadata["version"].value: r.event_log_entry.run_id
              for r in history.fetch_materializations(build_key("recommendations-api"), limit=10).records}
    deploys = history.fetch_materializations(env_key("recommendations-api", "prod"), limit=10).records
    shipped = {r.event_log_entry.asset_materialization.metadata["version"].value: r.timestamp for r in deploys
               if "rollback_from" not in r.event_log_entry.asset_materialization.metadata}
    restored = next(r.timestamp for r in deploys if "rollback_from" in r.event_log_entry.asset_materialization.metadata)
    unhealthy = history.fetch_observations(env_key("recommendations-api", "prod"), limit=10).records[-1].timestamp

    assert main(["metrics", "--since", "1d", "--json"]) == 0
    tables = json.loads(capsys.readouterr().out)
    service = next(f for f in tables["deliverable"] if f["scope"] == "recommendations-api")
    model = next(f for f in tables["deliverable"] if f["scope"] == "churn-model")
    lead_times = sorted(shipped[v] - created[builds[v]] for v in ("v1", "v3"))

    assert (service["deploys"], service["unhealthy_deploys"], service["failed_attempts"]) == (2, 1, 1)
    assert service["change_failure_rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert service["lead_time_s"] == pytest.approx(sum(lead_times) / 2, abs=0.1)
    assert service["time_to_restore_s"] == pytest.approx(restored - unhealthy, abs=0.1)
    assert service["deploys_per_day"] == 2.0
    assert (model["deploys"], model["lead_time_s"], model["change_failure_rate"]) == (0, None, None)
    kinds = {f["scope"]: f["deploys"] for f in tables["kind"]}
    teams = {f["scope"]: f["deploys"] for f in tables["team"]}
    assert kinds == {"model": 0, "service": 2} and teams == {"ml-team": 0, "recs-team": 2}
    assert catalog.deliverables["recommendations-api"].kind == "service"

    assert main(["metrics"]) == 0
    table = capsys.readouterr().out
    assert "recommendations-api  2" in table and "33%" in table
