"""Each environment runs its version of a batch job on the job's schedule, as a Dagster run.

Per (job, environment): the non-blocking check `scheduled_run` on `<name>/<env>`, a job of that check
alone, and a schedule (cron in UTC) that requests it while a version is deployed there, one run
key per tick. The run reads the inputs the upstreams deployed in that environment published, runs
the job's code in the sandbox (run.py) and replaces `<env schema>.<output>`. Its check result is
what the environment asset shows of the last run: a failed run is a failed check there (with the
job's own last lines) and a failed Dagster run, in the run list beside its logs. Locally the run is
a child process of the daemon's run launcher; on Kubernetes a run pod whose step pod gets the job's
compute profile (a GPU one included), and the job's code a sandbox pod beside it.
"""

# No `from __future__ import annotations` here: Dagster reads the check's `context` annotation as a type.
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from platform_assets.compute import ComputeTags, stage_pool, step_compute
from platform_assets.handlers.base import BuildFailed, Deployed, StageContext
from platform_assets.kinds.job.handler import SCHEDULED_RUN
from platform_assets.kinds.job.run import JobResult, JobRun, job_inputs, run_job, upstream_tables
from platform_assets.kinds.registry import get_handler
from platform_assets.records import env_key, latest
from platform_assets.settings import PlatformSettings
from platform_assets.specs import Deliverable
from resources.warehouse import published_schema

SCHEDULED_FOR = "platform/scheduled_for"


def job_name(name: str, env: str) -> str:
    """The Dagster job of one environment's scheduled runs (job names allow no '-')."""
    return f"run_{name}_{env}".replace("-", "_")


def scheduled_runs(deliverables: list[Deliverable], settings: PlatformSettings) -> dg.Definitions:
    checks, jobs, schedules = [], [], []
    tags = ComputeTags(settings)
    for deliverable in deliverables:
        for env in settings.environment_names:
            check = run_check(deliverable, env, settings, tags)
            job = dg.define_asset_job(job_name(deliverable.name, env), selection=dg.AssetSelection.checks(check),
                                      tags={"deliverable": deliverable.name, "stage": "run"},
                                      description=f"A run of {deliverable.name} in {env}")
            checks.append(check)
            jobs.append(job)
            schedules.append(run_schedule(deliverable, env))
    return dg.Definitions(asset_checks=checks, jobs=jobs, schedules=schedules)


def run_check(deliverable: Deliverable, env: str, settings: PlatformSettings,
              tags: ComputeTags) -> dg.AssetChecksDefinition:
    spec = deliverable.spec
    key = env_key(deliverable.name, env)
    handler = get_handler(spec.kind)
    compute = step_compute(spec, "run", settings)

    @dg.multi_asset_check(
        specs=[dg.AssetCheckSpec(SCHEDULED_RUN, asset=key, description=(
            f"the last run of {deliverable.name} in {env} (schedule '{spec.job.schedule}', UTC) wrote "
            f"{published_schema(settings, env, spec)}.{spec.job.output}"))],
        name=f"{job_name(deliverable.name, env)}_check",
        required_resource_keys={"artifact_store", *handler.resources},
        op_tags=tags(compute, "run"),
        pool=stage_pool(handler.step_pool(settings), settings.profile(compute).pool, key, "run", settings),
    )
    def _run(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        from platform_assets.stages import stage_context

        ctx = stage_context(context.op_execution_context, deliverable, settings)
        deployed = ctx.deployed(env)
        if deployed is None:
            raise dg.Failure(f"nothing of {deliverable.name} is deployed in {env}; deliver it there first")
        passed, description, metadata = scheduled_run(ctx, env, deployed)
        yield dg.AssetCheckResult(check_name=SCHEDULED_RUN, asset_key=key, passed=passed, description=description,
                                  metadata=metadata)
        if not passed:  # the run fails too, so the run list and the schedule's ticks show it
            raise dg.Failure(description=description, metadata={"output_tail": dg.MetadataValue.md(
                f"```\n{metadata.get('output_tail', '')}\n```")})

    return _run


def scheduled_run(ctx: StageContext, env: str, deployed: Deployed) -> tuple[bool, str, dict]:
    """Run the version deployed in `env` on what its upstreams publish there; replace its output."""
    spec = ctx.spec
    version, record = deployed.version, deployed.metadata
    table = f"{published_schema(ctx.settings, env, spec)}.{spec.job.output}"
    metadata = {"version": version, "output": table}
    python = record.get("python")
    try:
        tables = upstream_tables(ctx, {name: ctx.deployed_of(name, env) for name in spec.depends_on})
    except BuildFailed as exc:
        return False, f"{version} could not start in {env}: {exc}", metadata
    with tempfile.TemporaryDirectory(prefix=f"job-{ctx.name}-{env}-") as tmp:
        inputs = job_inputs(ctx, tables, Path(tmp), None)
        wheel = ctx.artifacts.path(ctx.name, version, record["wheel"])
        ctx.log.info(f"running {ctx.name} {version} in {env} on {', '.join(inputs.sources.values()) or 'no inputs'}")
        result = run_job(ctx, JobRun(wheel, python if python and Path(python).is_file() else None, env, False),
                         inputs)
        metadata.update(_run_metadata(result, inputs.sources))
        if result.error is not None or result.output is None:
            return False, (f"{ctx.name} {version} failed in {env}: {result.error}; nothing was written, "
                           f"{table} keeps the last good run's rows"), metadata
        import pandas as pd

        schema, _, name = table.partition(".")
        try:
            rows = ctx.resources.warehouse.replace_table(schema, name, pd.read_parquet(result.output))
        except ValueError as exc:  # a column name the warehouse cannot take; nothing was written
            return False, (f"{ctx.name} {version} ran in {env} but its output cannot be written to {table}: {exc}; "
                           f"rename the columns {spec.job.entrypoint} returns"), metadata
    metadata["rows"] = rows
    return True, f"{version} wrote {rows} rows to {table} in {result.runtime_s}s", metadata


def _run_metadata(result: JobResult, sources: dict[str, str]) -> dict:
    return {"input_rows": result.input_rows, "inputs": sources, "runtime_s": result.runtime_s,
            "output_tail": result.output_tail[-3000:]}


def run_schedule(deliverable: Deliverable, env: str) -> dg.ScheduleDefinition:
    key, job = env_key(deliverable.name, env), job_name(deliverable.name, env)

    @dg.schedule(name=f"{job}_schedule", cron_schedule=deliverable.spec.job.schedule, job_name=job,
                 execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"Runs the version of {deliverable.name} deployed in {env}")
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        deployed = latest(context.instance, key)
        if deployed is None:
            return dg.SkipReason(f"nothing of {deliverable.name} is deployed in {env} yet")
        when = context.scheduled_execution_time.isoformat()
        return dg.RunRequest(run_key=f"{deliverable.name}:{env}:{when}",
                             tags={SCHEDULED_FOR: when, "platform/version": deployed.version})

    return _schedule
