"""Notebooks: a Jupyter notebook run against published data, gated, and published as an HTML report.

build: papermill runs the notebook on the platform's own Python with the spec's parameters and
the location of the exact data its inputs published (the audit schema of the upstream version);
the executed notebook and its HTML rendering are the artifact. version = digest of the notebook's
code, its folder, the parameters and the input versions. evaluate: gates `executes`, `outputs`,
`runtime_max`. deploy: publish the HTML to the environment's report store; the previous report
stays there for rollback.
"""

from __future__ import annotations

import sys
import tempfile
from hashlib import sha256
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from platform_assets.fingerprint import copy_sources
from platform_assets.handlers.base import BUILD_RECORD, BuildFailed, GateResult, KindHandler, StageContext
from platform_assets.handlers.notebook_gates import NotebookGates, executes_gate, outputs_gate, runtime_gate
from platform_assets.handlers.notebook_run import (
    KERNEL_NAME,
    NotebookError,
    execute,
    folder_digest,
    parameter_names,
    read_notebook,
    render_html,
)
from platform_assets.handlers.spec_paths import resolve_in_folder
from platform_assets.specs import DeliverableSpec, StrictModel
from resources.deploy_target import DeployFailed, DeployTarget

if TYPE_CHECKING:
    from resources.report_store import ReportStore

EXECUTED = "executed.ipynb"
REPORT = "report.html"
PLATFORM_PARAMETERS = ("warehouse_type", "warehouse_location", "warehouse_password_env", "input_schema",
                       "input_schemas", "input_versions")


class NotebookSettings(StrictModel):
    path: str = Field(pattern=r"^[^/].*\.ipynb$", description="the notebook, relative to the spec's folder")
    parameters: dict[str, Any] = Field(default_factory=dict)
    cell_timeout_s: float = Field(default=600.0, gt=0, description="a cell running longer fails `executes`")

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
    technology = "jupyter"
    spec_model = NotebookSpec
    gates = ("executes", "outputs", "runtime_max")
    resources = frozenset({"warehouse", "report_store"})
    pool = "duckdb"  # the kernel reads the DuckDB file, which a dbt build may be writing

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
        schemas = _input_schemas(ctx)
        parameters = {**settings.parameters, **_platform_parameters(ctx, schemas)}
        with tempfile.TemporaryDirectory(prefix=f"notebook-{ctx.name}-") as tmp:
            source = copy_sources(ctx.deliverable.folder, Path(tmp) / "src")
            out = Path(tmp) / "out"
            out.mkdir()
            ctx.log.info(f"executing {settings.path} with kernel {KERNEL_NAME} ({sys.executable}) on {schemas}")
            try:
                run = execute(source / settings.path, out / EXECUTED, parameters, settings.cell_timeout_s)
            except (RuntimeError, OSError) as exc:
                raise BuildFailed(f"the kernel ({sys.executable}) could not run {settings.path}: {exc}") from exc
            render_html(out / EXECUTED, out / REPORT)
            executed = ctx.artifacts.put_file(ctx.name, version, out / EXECUTED)
            report = ctx.artifacts.put_file(ctx.name, version, out / REPORT)
        ctx.log.info(f"{settings.path} ran in {run.runtime_s}s; failure: {run.failure}; recorded {run.outputs}")
        return {
            "version": version,
            "notebook": settings.path,
            "parameters": parameters,
            "inputs": schemas,
            "upstream_versions": ctx.upstream_versions,
            "kernel": {"name": KERNEL_NAME, "python": sys.executable},
            "executed_notebook": EXECUTED,
            "executed_notebook_path": str(executed),
            "report": REPORT,
            "report_path": str(report),
            "report_sha256": sha256(report.read_bytes()).hexdigest(),
            **run.as_dict(),
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


def _input_schemas(ctx: StageContext) -> dict[str, str]:
    """The audit schema each upstream dataset version was built in: immutable, exactly what it published."""
    schemas: dict[str, str] = {}
    for upstream, version in ctx.upstream_versions.items():
        if not ctx.artifacts.exists(upstream, version, BUILD_RECORD):
            raise BuildFailed(f"the build record of {upstream} {version} is gone from the artifact store; "
                              f"deliver {upstream} again")
        schema = ctx.artifacts.get_json(upstream, version, BUILD_RECORD).get("audit_schema")
        if schema is None:
            continue
        if not ctx.resources.warehouse.schema_exists(schema):
            raise BuildFailed(f"the data of {upstream} {version} (schema {schema}) is no longer in the warehouse; "
                              f"deliver {upstream} again")
        schemas[upstream] = schema
    return schemas


def _platform_parameters(ctx: StageContext, schemas: dict[str, str]) -> dict[str, Any]:
    """Where the inputs are: injected after the notebook's own parameters, so a notebook never hard-codes it."""
    warehouse = ctx.settings.warehouse
    parameters: dict[str, Any] = {
        "warehouse_type": warehouse.type,
        "warehouse_location": ctx.resources.warehouse.location(),
        "input_schemas": schemas,
        "input_versions": dict(ctx.upstream_versions),
    }
    if len(schemas) == 1:
        parameters["input_schema"] = next(iter(schemas.values()))
    if warehouse.type == "postgres":
        parameters["warehouse_password_env"] = warehouse.password_env
    return parameters
