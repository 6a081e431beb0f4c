"""Notebooks: a Jupyter notebook run against published data, gated, and published as an HTML report.

build: the platform exports the exact data its inputs published (each table of the audit schema
of the upstream version) to Parquet files; papermill runs the notebook in the sandbox, with the
spec's parameters and those files, on a kernel that sees nothing else of the platform (no
warehouse credentials); the executed notebook and its HTML rendering are the artifact.
version = digest of the notebook's code, its folder, the parameters and the input versions.
evaluate: gates `executes`, `outputs`, `runtime_max`. deploy: publish the HTML to the environment's
report store; the previous report stays there for rollback.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from platform_assets.compute import step_compute
from platform_assets.fingerprint import copy_sources
from platform_assets.handlers.base import BUILD_RECORD, BuildFailed, GateResult, KindHandler, StageContext
from platform_assets.handlers.spec_paths import resolve_in_folder
from platform_assets.kinds.notebook.gates import NotebookGates, executes_gate, outputs_gate, runtime_gate
from platform_assets.kinds.notebook.run import (
    KERNEL_NAME,
    NotebookError,
    folder_digest,
    parameter_names,
    read_notebook,
    render_html,
)
from platform_assets.sandbox import PYTHON, SandboxTask
from platform_assets.specs import DeliverableSpec, Seconds, StrictModel
from resources.deploy_target import DeployFailed, DeployTarget

if TYPE_CHECKING:
    from resources.report_store import ReportStore

EXECUTED = "executed.ipynb"
REPORT = "report.html"
PLATFORM_PARAMETERS = ("input_files", "input_schemas", "input_versions")
# The sandbox task's folder: the notebook's folder, its inputs, the job and what comes back.
SOURCE, INPUTS, OUT, JOB, RESULT = "source", "inputs", "out", "job.json", "execution.json"
RUNNER = "platform_assets.kinds.notebook.runner"


class NotebookSettings(StrictModel):
    path: str = Field(pattern=r"^[^/].*\.ipynb$", description="the notebook, relative to the spec's folder")
    parameters: dict[str, Any] = Field(default_factory=dict)
    cell_timeout_s: float = Field(default=600.0, gt=0, description="a cell running longer fails `executes`")
    # With a `schedule:`, the report in the last environment is flagged stale (`report_schedule`) once
    # a new one was due and this much more time has passed.
    schedule_grace: Seconds = 3600.0

    @field_validator("parameters")
    @classmethod
    def _assignable(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        problems = [f"'{name}' is not a Python variable name, so no cell can read it"
                    for name in parameters if not name.isidentifier()]
        problems += [f"'{name}' is set by the platform ({', '.join(PLATFORM_PARAMETERS)}); rename it"
                     for name in parameters if name in PLATFORM_PARAMETERS]
        if problems:
            raise ValueError("; ".join(problems))
        return parameters


class NotebookSpec(DeliverableSpec):
    kind: Literal["notebook"]
    gates: NotebookGates = NotebookGates()
    notebook: NotebookSettings


class NotebookHandler(KindHandler):
    kind = "notebook"
    template = Path(__file__).with_name("template")
    technology = "jupyter"
    spec_model = NotebookSpec
    gates = ("executes", "outputs", "runtime_max")
    resources = frozenset({"warehouse", "report_store", "sandbox"})
    warehouse_pool = True  # the inputs are exported from it
    follows_sources = True

    def publishes_on_schedule(self, spec: Any) -> bool:
        return bool(spec.schedule)

    def spec_paths(self, spec: Any) -> dict[str, str]:
        return {"notebook.path": spec.notebook.path}

    def version(self, ctx: StageContext) -> str:
        settings: NotebookSettings = ctx.spec.notebook
        path = _notebook_file(ctx)
        try:
            names = parameter_names(read_notebook(path), path)
            digest = folder_digest(ctx.deliverable.folder, {
                "notebook": settings.path, "parameters": settings.parameters, "inputs": ctx.upstream_versions})
        except NotebookError as exc:
            raise BuildFailed(f"{exc} (field 'notebook.path' in {ctx.deliverable.path})") from exc
        unknown = sorted(set(settings.parameters) - names) if names is not None else []
        if unknown:
            raise BuildFailed(
                f"{ctx.deliverable.path}: field 'notebook.parameters': {', '.join(unknown)} not assigned in the "
                f"'parameters' cell of {path} (it assigns {', '.join(sorted(names or ())) or 'nothing'}); "
                "give each a default there, or remove it from the spec"
            )
        return digest

    def reusable(self, ctx: StageContext, record: dict[str, Any]) -> bool:
        """A failed run is run again (nothing deployed it); a good one while its files are intact."""
        return record["failure"] is None and all(
            ctx.artifacts.exists(ctx.name, record["version"], f) for f in (EXECUTED, REPORT))

    def build(self, ctx: StageContext, version: str) -> dict[str, Any]:
        settings: NotebookSettings = ctx.spec.notebook
        inputs = _pinned_inputs(ctx)
        with tempfile.TemporaryDirectory(prefix=f"notebook-{ctx.name}-") as tmp:
            workdir = Path(tmp)
            copy_sources(ctx.deliverable.folder, workdir / SOURCE)
            files = _export_inputs(ctx, inputs, workdir)
            parameters = {**settings.parameters, **_platform_parameters(ctx, inputs, files, workdir)}
            ctx.log.info(f"executing {settings.path} in the sandbox on {parameters['input_files']}")
            run = _execute(ctx, workdir, parameters)
            out = workdir / OUT
            render_html(out / EXECUTED, out / REPORT)
            executed = ctx.artifacts.put_file(ctx.name, version, out / EXECUTED)
            report = ctx.artifacts.put_file(ctx.name, version, out / REPORT)
        python = run.pop("python")
        ctx.log.info(f"{settings.path} ran in {run['runtime_s']}s; failure: {run['failure']}; "
                     f"recorded {run['outputs']}")
        return {
            "version": version,
            "notebook": settings.path,
            "parameters": parameters,
            "inputs": {name: pinned.schema for name, pinned in inputs.items()},
            "upstream_versions": ctx.upstream_versions,
            "kernel": {"name": KERNEL_NAME, "python": python},
            "executed_notebook": EXECUTED,
            "executed_notebook_path": str(executed),
            "report": REPORT,
            "report_path": str(report),
            "report_sha256": sha256(report.read_bytes()).hexdigest(),
            **run,
        }

    def build_metadata(self, record: dict[str, Any]) -> dict[str, Any]:
        import dagster as dg

        return {
            "executes": executes_gate(record).summary,
            "runtime_s": record["runtime_s"],
            "outputs": record["outputs"],
            "inputs": record["inputs"],
            "kernel_python": record["kernel"]["python"],
            "executed_notebook": dg.MetadataValue.path(record["executed_notebook_path"]),
            "report": dg.MetadataValue.path(record["report_path"]),
        }

    def evaluate(self, ctx: StageContext, version: str, record: dict[str, Any]) -> list[GateResult]:
        gates: NotebookGates = ctx.spec.gates
        return [executes_gate(record), outputs_gate(record, gates.outputs), runtime_gate(record, gates.runtime_max)]

    def deploy(self, ctx: StageContext, version: str, record: dict[str, Any], target: DeployTarget) -> dict[str, Any]:
        store = _report_store(ctx)
        env = target.environment
        try:
            html = ctx.artifacts.path(ctx.name, version, record["report"])
            before = store.current(env, ctx.name)
            published = store.publish(env, ctx.name, version, html)
        except OSError as exc:  # nothing was switched: the pointer moves last
            raise DeployFailed(f"publishing the report of {ctx.name} {version} to {env} failed: {exc}",
                               {"attempted_version": version}) from exc
        return {
            "version": version,
            "url": published["url"],
            "report": published["path"],
            "current_url": published["current_url"],
            "report_sha256": record["report_sha256"],
            "previous_version": before["version"] if before else None,
        }

    def verify(self, ctx: StageContext, deployment: dict[str, Any], target: DeployTarget) -> GateResult:
        """The environment's current report is this version's, byte for byte what the build rendered."""
        store = _report_store(ctx)
        current = store.current(target.environment, ctx.name)
        version = deployment["version"]
        if current is None or current["version"] != version:
            detail = f"{current['version']} is current" if current else "no report is published"
            return GateResult("healthy", False, f"{detail}, expected {version}", {"url": deployment["url"]})
        try:
            served = sha256(store.read(target.environment, ctx.name, version)).hexdigest()
        except FileNotFoundError:
            served = "missing"
        passed = served == deployment["report_sha256"]
        summary = (f"{current['current_url']} serves the report of {version}" if passed
                   else f"the published report of {version} differs from the one rendered (sha256 {served})")
        return GateResult("healthy", passed, summary, {"url": deployment["url"], "sha256": served})


def _report_store(ctx: StageContext) -> ReportStore:
    return ctx.resources.report_store


def _notebook_file(ctx: StageContext) -> Path:
    return resolve_in_folder(ctx.deliverable.path, "notebook.path", ctx.spec.notebook.path)


@dataclass(frozen=True)
class PinnedInput:
    """The data one upstream dataset version published: its audit schema and tables, never changed."""

    schema: str
    tables: tuple[str, ...]


def _pinned_inputs(ctx: StageContext) -> dict[str, PinnedInput]:
    """The audit schema each upstream dataset version was built in: immutable, exactly what it published."""
    inputs: dict[str, PinnedInput] = {}
    for upstream, version in ctx.upstream_versions.items():
        if not ctx.artifacts.exists(upstream, version, BUILD_RECORD):
            raise BuildFailed(f"the build record of {upstream} {version} is gone from the artifact store; "
                              f"deliver {upstream} again")
        record = ctx.artifacts.get_json(upstream, version, BUILD_RECORD)
        schema = record.get("audit_schema")
        if schema is None:
            continue
        if not ctx.resources.warehouse.schema_exists(schema):
            raise BuildFailed(f"the data of {upstream} {version} (schema {schema}) is no longer in the warehouse; "
                              f"deliver {upstream} again")
        inputs[upstream] = PinnedInput(schema, tuple(record.get("models", [])))
    return inputs


def _export_inputs(ctx: StageContext, inputs: dict[str, PinnedInput], workdir: Path) -> dict[str, dict[str, Path]]:
    """Each pinned table as a Parquet file in the task's folder: the notebook reads files, so it needs
    no warehouse credential, and a pod gets them like any other input."""
    files: dict[str, dict[str, Path]] = {}
    for dataset, pinned in inputs.items():
        folder = workdir / INPUTS / dataset
        folder.mkdir(parents=True)
        for table in pinned.tables:
            path = folder / f"{table}.parquet"
            ctx.resources.warehouse.frame(pinned.schema, table).to_parquet(path, index=False)
            files.setdefault(dataset, {})[table] = path
    return files


def _platform_parameters(
    ctx: StageContext, inputs: dict[str, PinnedInput], files: dict[str, dict[str, Path]], workdir: Path
) -> dict[str, Any]:
    """What the notebook reads: injected after its own parameters, so it never hard-codes a path. Paths
    are relative to the notebook's folder (its working directory), so they hold wherever the task runs."""
    folder = (workdir / SOURCE / ctx.spec.notebook.path).parent
    return {
        "input_files": {dataset: {table: os.path.relpath(path, folder) for table, path in tables.items()}
                        for dataset, tables in files.items()},
        "input_schemas": {name: pinned.schema for name, pinned in inputs.items()},
        "input_versions": dict(ctx.upstream_versions),
    }


def _execute(ctx: StageContext, workdir: Path, parameters: dict[str, Any]) -> dict[str, Any]:
    """papermill in the sandbox (`runner.py`): the kernel inherits the sandbox's minimal
    environment only. Returns what the runner recorded; a failing cell is a result, not an error."""
    settings: NotebookSettings = ctx.spec.notebook
    notebook = f"{SOURCE}/{settings.path}"
    job = {"notebook": notebook, "output": f"{OUT}/{EXECUTED}", "result": f"{OUT}/{RESULT}",
           "parameters": parameters, "cell_timeout_s": settings.cell_timeout_s}
    (workdir / JOB).write_text(json.dumps(job))
    cells = sum(cell.cell_type == "code" for cell in read_notebook(workdir / notebook).cells)
    profile = step_compute(ctx.spec, "build", ctx.settings)
    task = SandboxTask(
        deliverable=ctx.name, team=ctx.spec.owner, purpose="notebook", command=[PYTHON, "-m", RUNNER, JOB],
        workdir=workdir, outputs=(OUT,), profile_name=profile, profile=ctx.settings.profile(profile),
        timeout_s=settings.cell_timeout_s * (cells + 1) + 120,  # + 1: the parameters papermill injects
    )
    result = ctx.resources.sandbox.run(task, ctx.step_context)
    if not result.ok or not (workdir / OUT / RESULT).is_file():
        what = "did not finish in time" if result.timed_out else f"exited with {result.exit_code}"
        raise BuildFailed(f"the kernel could not run {settings.path} ({what}):\n{result.output}")
    return json.loads((workdir / OUT / RESULT).read_text())
