"""Datasets: dbt models built, audited and published with write-audit-publish.

build: `dbt build` of the models (and what they are built from) into an audit schema of their
own; version = digest of the compiled SQL and the seed data. evaluate: gates `dbt_tests`,
`row_count_min`, `freshness`, `schema_contract`. deploy: the environment's views switch to the
audited schema in one transaction; the previous version's schema stays for rollback.
"""

from __future__ import annotations

import hashlib
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from platform_assets.handlers.base import BUILD_RECORD, BuildFailed, GateResult, KindHandler, StageContext
from platform_assets.kinds.dataset.checks import project_problems
from platform_assets.kinds.dataset.dbt_manifest import (
    ManifestError,
    dbt_asset_key,
    ensure_manifest,
    load_manifest,
    models_by_name,
    upstream_closure,
    warehouse_assets,
)
from platform_assets.kinds.dataset.dbt_projects import DbtProject, ProjectError, project_at
from platform_assets.settings import PlatformSettings, dbt_project_dir
from platform_assets.specs import Deliverable, DeliverableSpec, StrictModel
from resources.deploy_target import DeployFailed, DeployTarget
from resources.warehouse import audit_schema, published_schema, table_claim

if TYPE_CHECKING:
    from dagster import AssetKey, AssetsDefinition

    from resources.warehouse import Warehouse

AUDIT_SCHEMA_PLACEHOLDER = "audit"


class DbtTestsGate(StrictModel):
    """All dbt tests of the built models must pass (dbt's own severities apply)."""


class FreshnessGate(StrictModel):
    """The newest value of `column` in each published model is at most `max_age_hours` old."""

    column: str = "loaded_at"
    max_age_hours: float = Field(default=24.0, gt=0)


class SchemaContractGate(StrictModel):
    allow_breaking: bool = False


class DatasetGates(StrictModel):
    dbt_tests: DbtTestsGate = DbtTestsGate()
    row_count_min: dict[str, int] = Field(default_factory=dict)
    freshness: FreshnessGate | None = FreshnessGate()  # null: off (a model without a load time)
    schema_contract: SchemaContractGate | None = SchemaContractGate()  # null: off


class DatasetSettings(StrictModel):
    models: list[str] = Field(min_length=1, description="dbt models this deliverable publishes")
    project: str | None = Field(
        default=None,
        description="folder of the dbt project, relative to this file's folder; default the platform's dbt_project/",
    )


class DatasetSpec(DeliverableSpec):
    kind: Literal["dataset"]
    gates: DatasetGates = DatasetGates()
    dataset: DatasetSettings

    @model_validator(mode="after")
    def _gates_name_published_models(self) -> DatasetSpec:
        unknown = sorted(set(self.gates.row_count_min) - set(self.dataset.models))
        if unknown:
            raise ValueError(
                f"gates.row_count_min names {', '.join(unknown)}, which dataset.models does not publish "
                f"({', '.join(self.dataset.models)})"
            )
        return self


def _warehouse(ctx: StageContext) -> Warehouse:
    return ctx.resources.warehouse


def project_dir_of(deliverable: Deliverable) -> Path:
    named = deliverable.spec.dataset.project
    return (deliverable.folder / named).resolve() if named else dbt_project_dir()


def project_of(deliverable: Deliverable) -> DbtProject:
    return project_at(project_dir_of(deliverable))


class DatasetHandler(KindHandler):
    kind = "dataset"
    template = Path(__file__).with_name("template")
    technology = "dbt"
    spec_model = DatasetSpec
    gates = ("dbt_tests", "row_count_min", "freshness", "schema_contract")
    resources = frozenset({"warehouse"})
    warehouse_pool = True  # dbt builds and publishes into it

    def data_max_age_hours(self, spec: Any) -> float | None:
        return spec.gates.freshness.max_age_hours if spec.gates.freshness else None  # `freshness: null`: none

    def build_deps(self, deliverable: Deliverable) -> list[AssetKey]:
        try:
            prefix = project_of(deliverable).key_prefix
        except ProjectError:  # reported by kind_assets; the build says it again
            return []
        return [dbt_asset_key({"resource_type": "model", "name": m}, prefix) for m in deliverable.spec.dataset.models]

    def claims(self, deliverable: Deliverable, settings: PlatformSettings) -> dict[str, str]:
        """A dbt model is published by one dataset, and a published table has one publisher in its
        namespace: two would publish the same tables in turn."""
        spec, project = deliverable.spec, project_dir_of(deliverable)
        claims = {f"dbt model '{model}' of {project}": "dataset.models" for model in spec.dataset.models}
        claims.update({table_claim(settings, spec, model): "dataset.models" for model in spec.dataset.models})
        return claims

    def kind_assets(
        self, deliverables: list[Deliverable], settings: PlatformSettings, team: str | None = None
    ) -> tuple[list[AssetsDefinition], list[str]]:
        """Each dbt project's models as assets; a project that does not parse leaves out its own models only.

        With `team`, a project is parsed only when one of that team's datasets uses it, and only the
        nodes the team owns (`team_of_nodes`, over every dataset of the project, so all locations
        agree) are its location's: another team's project that does not parse is not its problem."""
        assets: list[AssetsDefinition] = []
        problems: list[str] = []
        by_project: dict[DbtProject, list[Deliverable]] = {}
        for deliverable in deliverables:
            try:
                by_project.setdefault(project_of(deliverable), []).append(deliverable)
            except ProjectError as exc:
                if team in (None, deliverable.spec.owner):
                    problems.append(f"{deliverable.path}: field 'dataset.project': {exc}")
        named: dict[str, DbtProject] = {}
        for project, users in by_project.items():
            mine = [d for d in users if team in (None, d.spec.owner)]
            if named.setdefault(project.key_prefix, project) is not project:
                if mine:
                    problems.append(f"{', '.join(str(d.path) for d in users)}: field 'dataset.project': the dbt "
                                    f"project {project.dir} is named '{project.name}' like "
                                    f"{named[project.key_prefix].dir}; asset keys start with the project name, "
                                    "so rename one of them")
                continue
            if not mine:
                continue
            published = {model: d.spec.owner for d in users for model in d.spec.dataset.models}
            try:
                built = warehouse_assets(project, published, settings.warehouse.type, team)
                manifest = load_manifest(ensure_manifest(project))
            except ManifestError as exc:
                files = ", ".join(str(d.path) for d in mine)
                where = "" if project.is_platform else f"{files}: field 'dataset.project': "
                problems.append(f"{where}{exc}\nIts models are left out and the builds of "
                                f"{', '.join(d.name for d in mine)} fail until the project parses.")
                continue
            assets += [built] if built else []
            problems += project_problems(project, manifest, mine)
        return assets, problems

    def version(self, ctx: StageContext) -> str:
        """Compiles the selection (with a fixed schema name) and fingerprints it with its inputs."""
        from platform_assets.kinds.dataset.dbt_runtime import failed_nodes, run_dbt

        project, manifest_file, manifest, models = _manifest_with(ctx)
        known = models_by_name(manifest)
        with tempfile.TemporaryDirectory(prefix=f"dbt-compile-{ctx.name}-") as tmp:
            compiled = run_dbt(["compile", *_selection(models)], project, manifest_file, _warehouse(ctx),
                               AUDIT_SCHEMA_PLACEHOLDER, target_path=Path(tmp), keep_parse=True)
            if not compiled.is_successful():
                raise BuildFailed(f"dbt compile failed: {'; '.join(failed_nodes(compiled))}")
            return _fingerprint(project, manifest, [known[m]["unique_id"] for m in models], _selection(models),
                                Path(tmp))

    def reusable(self, ctx: StageContext, record: dict[str, Any]) -> bool:
        return _warehouse(ctx).schema_exists(record["audit_schema"])

    def build(self, ctx: StageContext, version: str) -> dict[str, Any]:
        from platform_assets.kinds.dataset.dbt_runtime import failed_nodes, run_dbt

        project, manifest_file, _, models = _manifest_with(ctx)
        warehouse = _warehouse(ctx)
        schema = audit_schema(ctx.name, version)
        ctx.log.info(f"dbt build {' '.join(_selection(models))} of {project.dir} into {schema}")
        built = run_dbt(["build", *_selection(models)], project, manifest_file, warehouse, schema)
        log = _keep_dbt_log(ctx, version, built.target_path)
        if not (built.target_path / "run_results.json").exists():
            raise BuildFailed(f"dbt build failed: {'; '.join(failed_nodes(built))}\ndbt's log: {log}")
        results = built.get_artifact("run_results.json")["results"]
        broken = [r for r in results if not r["unique_id"].startswith("test.") and r["status"] == "error"]
        if broken:
            details = "; ".join(f"{r['unique_id']}: {r.get('message')}" for r in broken)
            raise BuildFailed(f"dbt could not build: {details}\ndbt's log: {log}")
        return {
            "version": version,
            "dbt_project": str(project.dir),
            "dbt_log": log,
            "audit_schema": schema,
            "models": models,
            "tests": _test_results(results),
            "tables": _describe_built(warehouse, schema, models),
            "upstream_versions": ctx.upstream_versions,
        }

    def build_metadata(self, record: dict[str, Any]) -> dict[str, Any]:
        """Row counts and column schemas per model, shown in the UI (TableSchema renders as a table)."""
        import dagster as dg

        tests = record["tests"]
        return {
            "audit_schema": record["audit_schema"],
            **({"dbt_log": dg.MetadataValue.path(record["dbt_log"])} if record.get("dbt_log") else {}),
            "dbt_tests": f"{tests['passed']}/{tests['total']} passed",
            **{f"rows/{m}": (t["rows"] if t else "not built") for m, t in record["tables"].items()},
            **{
                f"schema/{m}": dg.TableSchema(columns=[dg.TableColumn(c, kind) for c, kind in t["columns"].items()])
                for m, t in record["tables"].items() if t
            },
        }

    def evaluate(self, ctx: StageContext, version: str, record: dict[str, Any]) -> list[GateResult]:
        """dbt_tests first: a model dbt did not build leaves the other gates "not evaluated", naming why."""
        gates = ctx.spec.gates
        tests = _dbt_tests_gate(record)
        cause = _not_built_cause(record)
        if cause:
            return [tests, *(GateResult(name, False, f"not evaluated: {cause}", {"not_evaluated": True})
                             for name in ("row_count_min", "freshness", "schema_contract"))]
        freshness = (_freshness_gate(ctx, record, gates.freshness) if gates.freshness
                     else _off("freshness"))
        contract = (_schema_contract_gate(ctx, record, gates.schema_contract) if gates.schema_contract
                    else _off("schema_contract"))
        return [tests, _row_count_gate(record, gates.row_count_min), freshness, contract]

    def deploy(self, ctx: StageContext, version: str, record: dict[str, Any], target: DeployTarget) -> dict[str, Any]:
        warehouse = _warehouse(ctx)
        if not warehouse.schema_exists(record["audit_schema"]):
            raise DeployFailed(f"audit schema {record['audit_schema']} of {version} no longer exists; build again")
        try:
            published = warehouse.publish(record["audit_schema"], published_schema(ctx.settings, target.environment,
                                                                                  ctx.spec), record["models"])
        except Exception as exc:  # the publish transaction rolled back: the environment is unchanged
            raise DeployFailed(f"publishing to {target.environment} in {warehouse.location()} failed: {exc}",
                               {"attempted_version": version}) from exc
        return {
            "version": version,
            "tables": sorted(published.values()),
            "audit_schema": record["audit_schema"],
            "warehouse": warehouse.location(),
            "rows": {m: record["tables"][m]["rows"] for m in record["models"]},
            **_data_time(ctx, record),
        }

    def verify(self, ctx: StageContext, deployment: dict[str, Any], target: DeployTarget) -> GateResult:
        """Every published view reads the audited schema and returns the audited row count."""
        warehouse = _warehouse(ctx)
        schema = published_schema(ctx.settings, target.environment, ctx.spec)
        problems = []
        for table, rows in deployment["rows"].items():
            source = warehouse.published_source(schema, table)
            if source != deployment["audit_schema"]:
                problems.append(f"{table} reads {source}, expected {deployment['audit_schema']}")
                continue
            served = warehouse.describe(schema, [table])[table]["rows"]
            if served != rows:
                problems.append(f"{table} serves {served} rows, audited {rows}")
        summary = "; ".join(problems) or f"{', '.join(deployment['tables'])} serve version {deployment['version']}"
        return GateResult("healthy", not problems, summary, {"tables": deployment["tables"]})


def _manifest_with(ctx: StageContext) -> tuple[DbtProject, Path, dict[str, Any], list[str]]:
    """The project and its manifest (file and content), after checking that it has every model the
    spec publishes."""
    models: list[str] = ctx.spec.dataset.models
    try:
        project = project_of(ctx.deliverable)
        manifest_file = ensure_manifest(project)
    except ProjectError as exc:
        raise BuildFailed(f"{ctx.deliverable.path}: field 'dataset.project': {exc}") from exc
    except ManifestError as exc:
        raise BuildFailed(str(exc)) from exc
    manifest = load_manifest(manifest_file)
    known = models_by_name(manifest)
    missing = [m for m in models if m not in known]
    if missing:
        raise BuildFailed(
            f"{ctx.deliverable.path}: field 'dataset.models': {', '.join(missing)} not in the dbt project "
            f"{project.dir}; models there: {', '.join(sorted(known))}"
        )
    return project, manifest_file, manifest, models


def _keep_dbt_log(ctx: StageContext, version: str, target_path: Path) -> str | None:
    """dbt's own log of the build, kept beside the version's artifacts (failed builds too)."""
    log = target_path / "dbt.log"
    return str(ctx.artifacts.put_file(ctx.name, version, log, "dbt.log")) if log.exists() else None


def _selection(models: list[str]) -> list[str]:
    """The models and what they are built from; `cautious` keeps other datasets' relationship tests out."""
    return ["--select", " ".join(f"+{m}" for m in models), "--indirect-selection", "cautious"]


def _fingerprint(project: DbtProject, manifest: dict[str, Any], model_ids: list[str], selection: list[str],
                 compiled_target: Path) -> str:
    """The dbt selection, the compiled SQL of every model built and the bytes of every seed they read.

    An audit schema is never rebuilt in place (a published view may read it), so anything that
    changes what the build puts there or which tests it runs must change the version.
    """
    digest = hashlib.sha256(" ".join(selection).encode() + b"\0")
    project_name = manifest["metadata"].get("project_name") or project.name
    for uid in sorted(upstream_closure(manifest, model_ids)):
        node = manifest["nodes"].get(uid) or manifest["sources"][uid]
        digest.update(uid.encode() + b"\0")
        if node["resource_type"] == "seed":
            digest.update((project.dir / node["original_file_path"]).read_bytes())
        elif node["resource_type"] in ("model", "snapshot"):
            compiled = compiled_target / "compiled" / project_name / node["original_file_path"]
            digest.update(compiled.read_bytes() if compiled.exists() else node.get("raw_code", "").encode())
            digest.update(str(node.get("config", {}).get("materialized")).encode())
    return digest.hexdigest()[:12]


def _test_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    tests = [r for r in results if r["unique_id"].startswith("test.")]
    failed = [
        f"{r['unique_id'].split('.')[2]}: {r['status']}" + (f" ({r['message']})" if r.get("message") else "")
        for r in tests if r["status"] in ("fail", "error")
    ]
    skipped = [r["unique_id"] for r in results if r["status"] == "skipped"]
    return {"total": len(tests), "passed": sum(r["status"] == "pass" for r in tests), "failed": failed,
            "skipped": skipped, "ran": sorted(r["unique_id"].split(".")[2] for r in tests)}


def _describe_built(warehouse: Warehouse, schema: str, models: list[str]) -> dict[str, Any]:
    """Row counts and columns of the built models; a model dbt skipped is recorded as missing."""
    tables: dict[str, Any] = {}
    for model in models:
        try:
            tables[model] = warehouse.describe(schema, [model])[model]
        except LookupError:
            tables[model] = None
    return tables


def _off(gate: str) -> GateResult:
    return GateResult(gate, True, f"off: the spec sets gates.{gate} to null")


def _not_built_cause(record: dict[str, Any]) -> str | None:
    """Which published models dbt did not build, and the failed tests that stopped them."""
    not_built = [m for m, t in record["tables"].items() if t is None]
    if not not_built:
        return None
    failed = record["tests"]["failed"]
    because = f"because {'; '.join(failed)} failed" if failed else "(dbt skipped it)"
    return f"{', '.join(not_built)} {'was' if len(not_built) == 1 else 'were'} not built {because}"


def _dbt_tests_gate(record: dict[str, Any]) -> GateResult:
    tests = record["tests"]
    not_built = [m for m, t in record["tables"].items() if t is None]
    passed = not tests["failed"] and not not_built
    summary = f"{tests['passed']}/{tests['total']} dbt tests passed"
    if tests["failed"]:
        summary += f"; failed: {', '.join(tests['failed'])}"
    if not_built:
        summary += f"; not built because an upstream test failed: {', '.join(not_built)}"
    return GateResult("dbt_tests", passed, summary, {"failed_tests": tests["failed"], "skipped": tests["skipped"]})


def _row_count_gate(record: dict[str, Any], minimums: dict[str, int]) -> GateResult:
    counts = {m: (t["rows"] if t else 0) for m, t in record["tables"].items()}
    short = [f"{m} has {counts[m]} rows, needs {n}" for m, n in minimums.items() if counts.get(m, 0) < n]
    summary = "; ".join(short) or ", ".join(f"{m}: {c} rows" for m, c in counts.items())
    return GateResult("row_count_min", not short, summary, {"row_counts": counts, "minimums": minimums})


def _newest_rows(ctx: StageContext, record: dict[str, Any], column: str) -> dict[str, datetime | str]:
    """Per published model, the newest value of `column` in the audit schema, or why there is none."""
    found: dict[str, datetime | str] = {}
    for model in record["models"]:
        table = record["tables"][model]
        if table is None or column not in table["columns"]:
            found[model] = f"{model} has no column '{column}' to judge freshness by"
            continue
        newest = _warehouse(ctx).max_value(record["audit_schema"], model, column)
        found[model] = (f"{model}.{column} is empty" if newest is None
                        else newest if newest.tzinfo else newest.replace(tzinfo=UTC))
    return found


def _data_time(ctx: StageContext, record: dict[str, Any]) -> dict[str, Any]:
    """When the published data was loaded (its stalest table), as the time prod's freshness check
    reads (`dagster/last_updated_timestamp`); nothing when a table cannot tell or freshness is off."""
    import dagster as dg

    if ctx.spec.gates.freshness is None:
        return {}
    newest = _newest_rows(ctx, record, ctx.spec.gates.freshness.column).values()
    times = [value for value in newest if isinstance(value, datetime)]
    if not times or len(times) < len(newest):
        return {}
    return {"dagster/last_updated_timestamp": dg.MetadataValue.timestamp(min(times).timestamp())}


def _freshness_gate(ctx: StageContext, record: dict[str, Any], gate: FreshnessGate) -> GateResult:
    now = datetime.now(UTC)
    stale, ages = [], {}
    for model, newest in _newest_rows(ctx, record, gate.column).items():
        if isinstance(newest, str):
            stale.append(newest)
            continue
        ages[model] = round((now - newest).total_seconds() / 3600, 2)
        if ages[model] > gate.max_age_hours:
            stale.append(f"{model} is {ages[model]}h old, at most {gate.max_age_hours}h allowed")
    summary = "; ".join(stale) or f"newest rows {max(ages.values(), default=0)}h old (max {gate.max_age_hours}h)"
    return GateResult("freshness", not stale, summary, {"age_hours": ages})


def _schema_contract_gate(ctx: StageContext, record: dict[str, Any], gate: SchemaContractGate) -> GateResult:
    baseline_env = ctx.settings.last_environment
    served = ctx.deployed(baseline_env)
    if served is None:
        return GateResult("schema_contract", True, f"nothing published in {baseline_env} yet")
    baseline = (ctx.build_record(served.version) or {}).get("tables", {})
    breaking = []
    for model in record["models"]:
        old = (baseline.get(model) or {}).get("columns", {})
        new = (record["tables"].get(model) or {}).get("columns", {})
        for column, old_type in old.items():
            if column not in new:
                breaking.append(f"{model}.{column} removed")
            elif new[column] != old_type:
                breaking.append(f"{model}.{column} retyped {old_type} -> {new[column]}")
    passed = not breaking or gate.allow_breaking
    if not breaking:
        summary = f"compatible with {served.version} in {baseline_env}"
    else:
        summary = f"{len(breaking)} breaking change(s) against {served.version} in {baseline_env}: "
        summary += "; ".join(breaking)
        summary += (" (allowed by the spec)" if gate.allow_breaking
                    else "; set gates.schema_contract.allow_breaking to ship it")
    metadata = {"breaking_changes": breaking, "baseline_version": served.version}
    return GateResult("schema_contract", passed, summary, metadata)


def pinned_table(ctx: StageContext, table: str, field: str) -> tuple[str, str, str]:
    """(dataset, version, audit schema) of `table` as published by one of the deliverable's upstreams.

    Consumers (models, notebooks) read the audit schema of the exact version their build recorded,
    never the moving environment view, so the build's inputs are immutable and reproducible.
    """
    for upstream, version in ctx.upstream_versions.items():
        record = ctx.artifacts.get_json(upstream, version, BUILD_RECORD) if ctx.artifacts.exists(
            upstream, version, BUILD_RECORD) else None
        if record and table in record.get("models", []):
            return upstream, version, record["audit_schema"]
    raise BuildFailed(
        f"{ctx.deliverable.path}: field '{field}': no dataset in depends_on "
        f"({', '.join(ctx.spec.depends_on) or 'none'}) publishes '{table}'; add the dataset that does to depends_on"
    )
