"""One run of a batch job's code, for the build's dry run and for each scheduled run.

The platform exports the inputs (each table an upstream dataset's version published, from its
immutable audit schema) to Parquet files; `runner.py` calls the job's entry point on them in
the sandbox, which sees the spec's env and secrets and its upstreams' URLs and tokens for the
environment, never the warehouse's credential; the platform reads back the DataFrame it returned.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from platform_assets.compute import step_compute
from platform_assets.handlers.base import BUILD_RECORD, BuildFailed, Deployed, StageContext
from platform_assets.handlers.upstreams import dependency_env
from platform_assets.sandbox import PYTHON, SandboxTask
from platform_assets.secret_store import secret_refs

RUNNER = Path(__file__).with_name("runner.py")
INPUTS, OUT, JOB, RESULT, OUTPUT = "inputs", "out", "job.json", "result.json", "output.parquet"


@dataclass(frozen=True)
class JobRun:
    """How to run one version: its wheel, the environment's interpreter that has it installed
    (None: the sandbox's own Python, with the wheel on its path), whose upstreams it calls."""

    wheel: Path
    python: str | None
    environment: str
    dry_run: bool


@dataclass(frozen=True)
class Inputs:
    workdir: Path
    files: dict[str, str]  # table -> path relative to workdir
    rows: int
    sources: dict[str, str]  # table -> "<upstream> <version> (<audit schema>)"


@dataclass(frozen=True)
class JobResult:
    rows: int
    input_rows: int
    columns: dict[str, str]
    runtime_s: float
    error: str | None
    output_tail: str
    output: Path | None  # the returned table as Parquet (None when it failed)

    def as_record(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "output"}


def upstream_tables(ctx: StageContext, deployed: dict[str, Deployed | None]) -> dict[str, tuple[str, str]]:
    """table -> (audit schema, source) for each table the upstream datasets' `deployed` versions
    published; every upstream (datasets it reads, models it calls) must be deployed."""
    tables: dict[str, tuple[str, str]] = {}
    for upstream, record in deployed.items():
        if record is None:
            raise BuildFailed(f"{ctx.name} depends on {upstream}, which is not deployed there yet; deliver "
                              f"{upstream} first (depends_on in {ctx.deliverable.path})")
        if not ctx.artifacts.exists(upstream, record.version, BUILD_RECORD):
            raise BuildFailed(f"the build record of {upstream} {record.version} is gone; deliver {upstream} again")
        built = ctx.artifacts.get_json(upstream, record.version, BUILD_RECORD)
        schema = built.get("audit_schema")
        if schema and not ctx.resources.warehouse.schema_exists(schema):
            raise BuildFailed(f"the data of {upstream} {record.version} (schema {schema}) is no longer in the "
                              f"warehouse; deliver {upstream} again")
        for table in built.get("models", []) if schema else []:
            tables[table] = (schema, f"{upstream} {record.version} ({schema})")
    return tables


def job_inputs(ctx: StageContext, tables: dict[str, tuple[str, str]], workdir: Path, limit: int | None) -> Inputs:
    """Each table as a Parquet file under `workdir` (the first `limit` rows of each, for a dry run)."""
    (workdir / INPUTS).mkdir(parents=True, exist_ok=True)
    files, rows = {}, 0
    for table, (schema, _) in tables.items():
        frame = ctx.resources.warehouse.frame(schema, table, limit=limit)
        frame.to_parquet(workdir / INPUTS / f"{table}.parquet", index=False)
        files[table] = f"{INPUTS}/{table}.parquet"
        rows += len(frame)
    return Inputs(workdir, files, rows, {table: source for table, (_, source) in tables.items()})


def run_job(ctx: StageContext, run: JobRun, inputs: Inputs) -> JobResult:
    """The entry point on `inputs` in the sandbox; a failure of the job's own code is a result."""
    settings = ctx.spec.job
    workdir = inputs.workdir
    shutil.copyfile(RUNNER, workdir / RUNNER.name)
    path = []
    if run.python is None:  # no environment has it installed: a wheel of pure Python imports as a zip
        shutil.copyfile(run.wheel, workdir / run.wheel.name)
        path = [run.wheel.name]
    (workdir / JOB).write_text(json.dumps({"entrypoint": settings.entrypoint, "inputs": inputs.files,
                                           "python_path": path, "output": f"{OUT}/{OUTPUT}",
                                           "result": f"{OUT}/{RESULT}"}))
    profile = step_compute(ctx.spec, "build" if run.dry_run else "run", ctx.settings)
    env = {**dependency_env(ctx, run.environment), **settings.env,
           "PLATFORM_ENVIRONMENT": run.environment, "PLATFORM_DRY_RUN": "1" if run.dry_run else "0"}
    task = SandboxTask(
        deliverable=ctx.name, team=ctx.spec.owner, purpose="dry-run" if run.dry_run else "job",
        command=[run.python or PYTHON, RUNNER.name, JOB], workdir=workdir, outputs=(OUT,), env=env,
        secret_env=secret_refs(settings.secrets), profile_name=profile, profile=ctx.settings.profile(profile),
        timeout_s=settings.timeout_s,
    )
    result = ctx.resources.sandbox.run(task, ctx.step_context)
    done = workdir / OUT / RESULT
    if result.timed_out or not done.is_file():
        what = f"did not finish within {settings.timeout_s:.0f}s (job.timeout_s)" if result.timed_out \
            else f"exited with {result.exit_code} before reporting"
        return JobResult(0, inputs.rows, {}, 0.0, f"the job {what}", result.output, None)
    reported = json.loads(done.read_text())
    output = workdir / OUT / OUTPUT
    return JobResult(reported.get("rows", 0), inputs.rows, reported.get("columns", {}), reported["runtime_s"],
                     reported.get("error"), result.output, output if output.is_file() else None)
