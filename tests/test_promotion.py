"""The promotion sensor, approvals, history and rollback against a real Dagster instance.

Deploys are recorded the way `run_deploy` records them (materializations with `version` and
`healthy`, written by a run's step), so the sensor's decisions are tested on the event log it
reads in production. Approvals are real runs of the approval job, signed with real SSH keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from platform_assets.approval_job import approval_job, approval_run_config
from platform_assets.catalog import Catalog, load_catalog
from platform_assets.cli import main
from platform_assets.delivery_actions import history, requester_tags, rollback_target
from platform_assets.errors import ActionRefused
from platform_assets.identity.approvals import check_approval
from platform_assets.identity.requester import registry
from platform_assets.identity.requests import SignedRequest
from platform_assets.identity.signatures import sign
from platform_assets.records import env_key, evaluate_key
from platform_assets.settings import PlatformSettings, load_settings
from sensors.promotion import promotion_sensors, promotion_tick
from tests.conftest import Identities, copy_deliverable, record_from_a_run
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
    sensor = promotion_sensors(catalog, settings)[0]
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


def test_a_version_whose_gates_passed_is_deployed_to_the_first_environment(instance, catalog, settings) -> None:
    """The trigger sensors only build and evaluate; the first deploy is a promotion too, in a run of
    its own, so a failing gate never fails a run that planned an environment."""
    record_from_a_run(instance, evaluate_key(MODEL), {"version": "2", "gates_passed": False})
    failed, cursor = tick(instance, catalog, settings, None)
    record_from_a_run(instance, evaluate_key(MODEL), {"version": "3", "gates_passed": True})
    passed, cursor = tick(instance, catalog, settings, cursor)
    deployed(instance, MODEL, "staging", "3")
    onwards, _ = tick(instance, catalog, settings, cursor)

    assert failed == []
    assert [(r.run_key, r.asset_selection, set(r.asset_check_keys)) for r in passed] == [
        (f"promote:{MODEL}:3:staging", [env_key(MODEL, "staging")],
         {dg.AssetCheckKey(env_key(MODEL, "staging"), "healthy"), dg.AssetCheckKey(env_key(MODEL, "staging"),
                                                                                   "last_deploy")})]
    assert [r.run_key for r in onwards] == [f"promote:{MODEL}:3:prod"]


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


def after_success(instance: dg.DagsterInstance, catalog: Catalog, settings: PlatformSettings) -> list[dg.RunRequest]:
    """The run-status sensor evaluated for the newest run, as the daemon does once it succeeded."""
    sensor = promotion_sensors(catalog, settings)[1]
    [run] = instance.get_runs(limit=1)
    [success] = [e for e in instance.all_logs(run.run_id) if e.dagster_event_type == dg.DagsterEventType.RUN_SUCCESS]
    context = dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_instance=instance, dagster_run=run,
                                                 dagster_event=success.dagster_event)
    return list(sensor(context) or [])


def test_a_successful_run_promotes_its_deliverable_at_once(instance, catalog, settings) -> None:
    """No promotion tick in between: the evaluation's run requests staging, staging's run prod."""
    record_from_a_run(instance, evaluate_key(MODEL), {"version": "3", "gates_passed": True})
    into_staging = after_success(instance, catalog, settings)
    deployed(instance, MODEL, "staging", "3")
    into_prod = after_success(instance, catalog, settings)
    deployed(instance, MODEL, "prod", "3")
    done = after_success(instance, catalog, settings)

    assert [(r.run_key, r.asset_selection, r.tags["platform/trigger"]) for r in into_staging] == [
        (f"promote:{MODEL}:3:staging", [env_key(MODEL, "staging")], "promotion")]
    assert set(into_staging[0].asset_check_keys) == {dg.AssetCheckKey(env_key(MODEL, "staging"), "healthy"),
                                                     dg.AssetCheckKey(env_key(MODEL, "staging"), "last_deploy")}
    assert [r.run_key for r in into_prod] == [f"promote:{MODEL}:3:prod"]
    assert done == []


def test_a_successful_run_leaves_failed_gates_unhealthy_deploys_and_manual_policies(instance, catalog,
                                                                                     settings) -> None:
    record_from_a_run(instance, evaluate_key(MODEL), {"version": "4", "gates_passed": False})
    failed_gates = after_success(instance, catalog, settings)
    deployed(instance, MODEL, "staging", "5", healthy=False)
    unhealthy = after_success(instance, catalog, settings)
    deployed(instance, SERVICE, "staging", "7")
    manual = after_success(instance, catalog, settings)

    assert failed_gates == [] and unhealthy == []
    assert manual == [], "a manual prod waits for an approval, which the promotion sensor reads"


def test_the_two_promotion_sensors_never_both_request_one_promotion(instance, catalog, settings) -> None:
    """Dagster dedupes run keys per sensor: a promotion the run-status sensor launched (here one
    that failed) is not requested again by the promotion sensor, nor the other way round."""
    deployed(instance, MODEL, "staging", "9")
    instance.add_run(dg.DagsterRun(job_name="platform_promote", status=dg.DagsterRunStatus.FAILURE,
                                   tags={"dagster/run_key": f"promote:{MODEL}:9:prod"},
                                   asset_selection=frozenset({env_key(MODEL, "prod")})))
    assert tick(instance, catalog, settings, None)[0] == []

    deployed(instance, MODEL, "staging", "10")
    requested, _ = tick(instance, catalog, settings, None)
    instance.add_run(dg.DagsterRun(job_name="__anonymous_asset_job_platform_promotion",
                                   status=dg.DagsterRunStatus.FAILURE, tags={"dagster/run_key": requested[0].run_key},
                                   asset_selection=frozenset({env_key(MODEL, "prod")})))
    deployed(instance, MODEL, "staging", "10")
    assert [r.run_key for r in requested] == [f"promote:{MODEL}:10:prod"]
    assert after_success(instance, catalog, settings) == []


def run_approval(instance: dg.DagsterInstance, catalog: Catalog, settings: PlatformSettings, version: str,
                 tags: dict[str, str]) -> dg.ExecuteInProcessResult:
    """What `deliver approve` submits, run in this process: the approval job with the request's tags."""
    return approval_job(catalog, settings).execute_in_process(
        run_config=approval_run_config(SERVICE, "prod", version), tags=tags, instance=instance, raise_on_error=False)


def test_manual_policy_counts_only_verified_approvals_by_an_approver(instance, catalog, settings,
                                                                     identities: Identities) -> None:
    record_from_a_run(instance, evaluate_key(SERVICE), {"version": "abc", "gates_passed": True})
    deployed(instance, SERVICE, "staging", "abc")
    waiting, cursor = tick(instance, catalog, settings, None)

    instance.report_runless_asset_event(dg.AssetObservation(asset_key=env_key(SERVICE, "prod"), metadata={
        "event": "approval", "version": "abc", "environment": "prod", "approved_by": "alice"}))
    forged, cursor = tick(instance, catalog, settings, cursor)
    mallory_tags, _ = requester_tags(settings, "approve", SERVICE, "prod", "abc", str(identities.keys["mallory"]))
    mallory = run_approval(instance, catalog, settings, "abc", mallory_tags)
    posing = SignedRequest.new("approve", SERVICE, "prod", "abc", "alice")  # alice's name, bob's key
    posing_tags = dataclasses.replace(posing, signature=sign(posing.payload(), identities.keys["bob"])).tags()
    impostor = run_approval(instance, catalog, settings, "abc", posing_tags)
    wrong_version = run_approval(instance, catalog, settings, "zzz", requester_tags(
        settings, "approve", SERVICE, "prod", "zzz", str(identities.keys["alice"]))[0])
    refused, cursor = tick(instance, catalog, settings, cursor)
    alice_tags, who = requester_tags(settings, "approve", SERVICE, "prod", "abc", str(identities.keys["alice"]))
    alice = run_approval(instance, catalog, settings, "abc", alice_tags)
    replayed = run_approval(instance, catalog, settings, "abc", alice_tags)
    approved, cursor = tick(instance, catalog, settings, cursor)
    again, _ = tick(instance, catalog, settings, cursor)

    assert waiting == forged == refused == again == []
    assert not mallory.success and "mallory is not an approver of recommendations-api for prod" in str(
        mallory.failure_data_for_node("record_approval").error.message)
    assert not impostor.success and "does not verify for 'alice'" in str(
        impostor.failure_data_for_node("record_approval").error.message)
    assert not wrong_version.success and "zzz is not what staging holds (abc)" in str(
        wrong_version.failure_data_for_node("record_approval").error.message)
    assert who == "alice" and alice.success
    assert not replayed.success and "already used by another run" in str(
        replayed.failure_data_for_node("record_approval").error.message)
    assert [r.run_key for r in approved] == [f"promote:{SERVICE}:abc:prod"]
    trail = [(e.event, e.detail) for e in history(instance, catalog, settings, SERVICE) if e.event == "approval"]
    assert trail[0] == ("approval", "by alice")
    assert trail[1][1].startswith("IGNORED (it carries no proof") and trail[1][1].endswith("claims alice"), trail
    with pytest.raises(ActionRefused, match=r"promotion.staging is auto"):
        main_or_raise(["approve", SERVICE, "--version", "abc", "--env", "staging", "--key",
                       str(identities.keys["alice"])])


def main_or_raise(argv: list[str]) -> int:
    from platform_assets.cli import COMMANDS, build_parser

    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


def test_approvals_expire_after_the_policys_max_age(instance, catalog, settings, identities: Identities) -> None:
    spec = yaml.safe_load((catalog.root / SERVICE / "deliverable.yaml").read_text())
    spec["promotion"]["prod"]["max_age"] = "1h"
    (catalog.root / SERVICE / "deliverable.yaml").write_text(yaml.safe_dump(spec))
    deliverable = load_catalog(catalog.root, settings).deliverables[SERVICE]
    record_from_a_run(instance, evaluate_key(SERVICE), {"version": "abc", "gates_passed": True})
    deployed(instance, SERVICE, "staging", "abc")
    tags, _ = requester_tags(settings, "approve", SERVICE, "prod", "abc", str(identities.keys["alice"]))
    assert run_approval(instance, catalog, settings, "abc", tags).success
    [observation] = instance.fetch_observations(env_key(SERVICE, "prod"), limit=1).records
    metadata = {k: v.value for k, v in observation.asset_observation.metadata.items()}
    signed_at = SignedRequest.from_tags(tags).requested_at  # type: ignore[union-attr]

    fresh = check_approval(metadata, deliverable, "prod", settings, registry(settings), now=signed_at + 60)
    stale = check_approval(metadata, deliverable, "prod", settings, registry(settings), now=signed_at + 2 * 3600)

    assert fresh.valid and fresh.approver == "alice"
    assert not stale.valid and "expired" in stale.reason and "max_age is 1.0h" in stale.reason


def test_rollback_picks_the_last_healthy_version_and_history_lists_everything(instance, catalog, settings) -> None:
    deployed(instance, MODEL, "prod", "1")
    deployed(instance, MODEL, "prod", "2", healthy=False)
    deployed(instance, MODEL, "prod", "3")

    assert rollback_target(instance, MODEL, "prod", None) == "1", "2 was never healthy"
    assert rollback_target(instance, MODEL, "prod", "1") == "1"
    with pytest.raises(ActionRefused, match="churn-model 2 was never healthy in prod"):
        rollback_target(instance, MODEL, "prod", "2")
    entries = history(instance, catalog, settings, MODEL)
    assert [(e.event, e.version, e.detail) for e in entries] == [
        ("deploy", "3", "healthy"), ("deploy", "2", "UNHEALTHY"), ("deploy", "1", "healthy")]


def test_cli_approve_refuses_a_non_approver_with_exit_2(instance, catalog, settings, monkeypatch, identities,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PLATFORM_CATALOG_DIR", str(catalog.root))
    monkeypatch.setenv("DAGSTER_HOME", instance.root_directory)

    code = main(["approve", SERVICE, "--version", "abc", "--env", "prod", "--key", str(identities.keys["mallory"])])
    claimed = main(["approve", SERVICE, "--version", "abc", "--env", "prod", "--as", "alice"])

    err = capsys.readouterr().err
    assert code == 2 and "refused: mallory is not an approver" in err
    assert claimed == 2 and "--as no longer says who you are" in err


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
