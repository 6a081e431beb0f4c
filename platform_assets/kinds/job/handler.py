"""Batch jobs: a Python function run on a cron schedule over the tables its upstream datasets publish.

build: the job's tests and wheel in the sandbox (as a service's), then a dry run of the wheel on a
sample of its inputs, calling the first environment's upstreams; version = source digest.
evaluate: gates `tests` and `dry_run`. deploy: the version becomes the one that runs on the
schedule in that environment (locally installed into an environment of its own; on Kubernetes the
wheel runs in a sandbox pod of the step). Each scheduled run is a Dagster run of the `scheduled_run`
check of `<name>/<env>` (schedule.py): the platform reads the inputs, the job's code runs in
the sandbox on files (no warehouse credential), the platform writes what it returns.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from platform_assets.compute import step_compute
from platform_assets.fingerprint import source_digest
from platform_assets.handlers.base import BuildFailed, GateResult, KindHandler, StageContext
from platform_assets.handlers.python_project import (
    ProjectError,
    ProjectSandbox,
    ProjectSettings,
    TestsGate,
    build_wheel,
    project_source,
    run_tests,
    tests_gate,
)
from platform_assets.handlers.wheel_install import install_isolated
from platform_assets.kinds.job.run import JobRun, job_inputs, run_job, upstream_tables
from platform_assets.secret_store import MissingSecret, secret_refs
from platform_assets.settings import PlatformSettings
from platform_assets.specs import Deliverable, DeliverableSpec, StrictModel, cron
from resources.deploy_target import DeployFailed, DeployTarget
from resources.manifest_target import ManifestTarget
from resources.warehouse import published_schema, table_claim

if TYPE_CHECKING:
    import dagster as dg

TEST_REPORT = "tests.json"
SCHEDULED_RUN = "scheduled_run"  # the check of each environment asset that a scheduled run evaluates


class DryRunGate(StrictModel):
    min_rows: int = Field(default=1, ge=0, description="rows the dry run must return")


class JobGates(StrictModel):
    tests: TestsGate = TestsGate()
    dry_run: DryRunGate = DryRunGate()


class JobSettings(ProjectSettings):
    entrypoint: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
                            description="module:function taking {table: DataFrame} and returning a DataFrame")
    schedule: str = Field(description="cron (UTC): when each environment runs its version")
    output: str = Field(pattern=r"^[a-z_][a-z0-9_]*$", description="the table it writes in each environment")
    sample_rows: int = Field(default=200, ge=1, description="rows of each input table the dry run reads")
    timeout_s: float = Field(default=3600.0, gt=0, description="a run taking longer fails")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return cron(value)


class JobSpec(DeliverableSpec):
    kind: Literal["job"]
    gates: JobGates = JobGates()
    job: JobSettings


class JobHandler(KindHandler):
    kind = "job"
    template = Path(__file__).with_name("template")
    technology = "python"
    spec_model = JobSpec
    gates = ("tests", "dry_run")
    resources = frozenset({"sandbox", "warehouse"})
    status_check = SCHEDULED_RUN
    warehouse_pool = True  # its inputs are exported from it, its output written there
    follows_sources = True

    def spec_paths(self, spec: Any) -> dict[str, str]:
        return spec.job.paths("job")

    def claims(self, deliverable: Deliverable, settings: PlatformSettings) -> dict[str, str]:
        """Its output table has one writer in its namespace, dataset or job."""
        return {table_claim(settings, deliverable.spec, deliverable.spec.job.output): "job.output"}

    def kind_definitions(self, deliverables: list[Deliverable], settings: PlatformSettings) -> dg.Definitions | None:
        if not deliverables:
            return None
        from platform_assets.kinds.job.schedule import scheduled_runs

        return scheduled_runs(deliverables, settings)

    def version(self, ctx: StageContext) -> str:
        return source_digest(_source(ctx))

    def build(self, ctx: StageContext, version: str) -> dict[str, Any]:
        settings: JobSettings = ctx.spec.job
        first = ctx.settings.environment_names[0]
        with tempfile.TemporaryDirectory(prefix=f"build-{ctx.name}-") as tmp:
            project = _project_sandbox(ctx, Path(tmp))
            try:
                tests = run_tests(project, settings.tests, settings.python_path, settings.test_timeout_s)
                ctx.log.info(f"job tests: {tests.passed} passed, {tests.failed} failed, {tests.errors} errors")
                wheel = build_wheel(project, Path(tmp) / "dist")
                tables = upstream_tables(ctx, {name: ctx.deployed_of(name, first) for name in ctx.spec.depends_on})
                ctx.log.info(f"dry run of {settings.entrypoint} on {settings.sample_rows} rows of "
                             f"{', '.join(tables) or 'no inputs'}, with the upstreams of {first}")
                dry = run_job(ctx, JobRun(wheel=wheel, python=None, environment=first, dry_run=True),
                              job_inputs(ctx, tables, Path(tmp) / "dry-run", settings.sample_rows))
            except MissingSecret as exc:
                raise BuildFailed(f"{ctx.deliverable.path}: field 'job.secrets.{exc.variable}': {exc}") from exc
            stored_wheel = ctx.artifacts.put_file(ctx.name, version, wheel)
        ctx.artifacts.put_json(ctx.name, version, TEST_REPORT, tests.as_dict())
        return {
            "version": version,
            "wheel": stored_wheel.name,
            "tests": {k: v for k, v in tests.as_dict().items() if k != "output_tail"},
            "dry_run": dry.as_record(),
            "upstream_versions": ctx.upstream_versions,
        }

    def build_metadata(self, record: dict[str, Any]) -> dict[str, Any]:
        tests, dry = record["tests"], record["dry_run"]
        return {"tests_passed": tests["passed"], "tests_failed": tests["failed"] + tests["errors"],
                "wheel": record["wheel"], "dry_run_rows": dry["rows"], "dry_run_error": dry["error"] or "none"}

    def evaluate(self, ctx: StageContext, version: str, record: dict[str, Any]) -> list[GateResult]:
        return [tests_gate(record["tests"], ctx.spec.gates.tests.min_passed),
                dry_run_gate(record["dry_run"], ctx.spec.gates.dry_run.min_rows, ctx.spec.job.entrypoint)]

    def deploy(self, ctx: StageContext, version: str, record: dict[str, Any], target: DeployTarget) -> dict[str, Any]:
        """Nothing runs now: the version is recorded as the one the environment's schedule runs.
        Locally its wheel is installed (once per version) so a run starts at once."""
        settings: JobSettings = ctx.spec.job
        python = None
        if not isinstance(target, ManifestTarget):
            wheel = ctx.artifacts.path(ctx.name, version, record["wheel"])
            try:
                python = str(install_isolated(wheel, target.workspace(ctx.name, version) / "venv"))
            except ProjectError as exc:
                raise DeployFailed(str(exc), {"attempted_version": version}) from exc
        return {"version": version, "schedule": settings.schedule, "wheel": record["wheel"], "python": python,
                "output": f"{published_schema(ctx.settings, target.environment, ctx.spec)}.{settings.output}"}

    def verify(self, ctx: StageContext, deployment: dict[str, Any], target: DeployTarget) -> GateResult:
        """What the schedule will run is there: the wheel in the artifact store and, locally, the
        environment that imports it."""
        version = deployment["version"]
        wheel = ctx.artifacts.path(ctx.name, version, deployment["wheel"])
        if not wheel.is_file():
            return GateResult("healthy", False, f"the wheel {deployment['wheel']} of {version} is gone")
        python = deployment.get("python")
        if python and not Path(python).is_file():
            return GateResult("healthy", False, f"the environment of {version} is gone ({python})")
        return GateResult("healthy", True, f"{version} runs on '{deployment['schedule']}' (UTC) into "
                                           f"{deployment['output']}", {"output": deployment["output"]})


def dry_run_gate(dry: dict[str, Any], min_rows: int, entrypoint: str) -> GateResult:
    if dry["error"]:
        return GateResult("dry_run", False, f"{entrypoint} failed on the sample: {dry['error']}",
                          {"output_tail": dry["output_tail"]})
    passed = dry["rows"] >= min_rows
    summary = f"{dry['rows']} rows from {dry['input_rows']} sample input rows in {dry['runtime_s']}s" + (
        "" if passed else f"; at least {min_rows} expected (gates.dry_run.min_rows)")
    return GateResult("dry_run", passed, summary, {"rows": dry["rows"], "columns": dry["columns"]})


def _project_sandbox(ctx: StageContext, scratch: Path) -> ProjectSandbox:
    settings: JobSettings = ctx.spec.job
    profile = step_compute(ctx.spec, "build", ctx.settings)
    return ProjectSandbox(
        sandbox=ctx.resources.sandbox, source=_source(ctx), scratch=scratch, deliverable=ctx.name,
        team=ctx.spec.owner, env=settings.env, secret_env=secret_refs(settings.secrets), profile_name=profile,
        profile=ctx.settings.profile(profile), context=ctx.step_context,
    )


def _source(ctx: StageContext) -> Path:
    return project_source(ctx.deliverable.path, "job", ctx.spec.job)
