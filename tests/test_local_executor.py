"""The local executor runs a chain of steps in the run's process and gives the steps of any other
run a process each (Dagster's multiprocess executor), on a real instance with a reconstructable job."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest

from platform_assets.code_location import executor
from platform_assets.local_executor import chain_in_run_executor
from platform_assets.settings import load_settings


@dg.asset
def first() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"pid": os.getpid()})


@dg.asset(deps=[first])
def second() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"pid": os.getpid()})


@dg.asset
def beside() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"pid": os.getpid()})


def location_job() -> dg.JobDefinition:
    """What a run worker reconstructs: an asset job on the local executor."""
    job = dg.define_asset_job("local", executor_def=chain_in_run_executor)
    return dg.Definitions(assets=[first, second, beside], jobs=[job]).resolve_job_def("local")


def run(tmp_path: Path, *assets: dg.AssetsDefinition) -> tuple[dict[str, int], list[dg.EventLogEntry]]:
    """The pid each asset ran in, and the run's events."""
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        # By its importable name: pytest imports this file as `test_local_executor`.
        job = dg.build_reconstructable_job("tests.test_local_executor", location_job.__name__)
        result = dg.execute_job(job, instance,
                                asset_selection=[a.key for a in assets])
        assert result.success
        pids = {a.key.to_user_string(): instance.get_latest_materialization_event(a.key)
                .asset_materialization.metadata["pid"].value for a in assets}
        return pids, instance.all_logs(result.run_id)


def test_a_chain_runs_in_the_runs_own_process(tmp_path: Path) -> None:
    pids, events = run(tmp_path, first, second)
    assert pids == {"first": os.getpid(), "second": os.getpid()}
    assert not [e for e in events if e.dagster_event_type == dg.DagsterEventType.STEP_WORKER_STARTING]
    assert any("Executing steps in process" in (e.message or "") for e in events)


@pytest.mark.e2e  # starts a process per step
def test_steps_that_can_overlap_get_a_process_each(tmp_path: Path) -> None:
    pids, events = run(tmp_path, first, beside)
    assert os.getpid() not in pids.values() and pids["first"] != pids["beside"]
    starting = {e.step_key for e in events if e.dagster_event_type == dg.DagsterEventType.STEP_WORKER_STARTING}
    assert starting == {"first", "beside"}


def test_local_chain_in_run_false_is_dagsters_multiprocess_executor() -> None:
    settings = load_settings()
    assert executor(settings).config_schema.parent_def is chain_in_run_executor, "the default, forkserver-configured"
    off = settings.model_copy(update={"execution": settings.execution.model_copy(
        update={"local_chain_in_run": False, "local_start_method": "spawn"})})
    assert executor(off) is dg.multiprocess_executor
    on = settings.model_copy(update={"execution": settings.execution.model_copy(
        update={"local_start_method": "spawn"})})
    assert executor(on) is chain_in_run_executor
