"""Running dbt inside a step, with dagster-dbt. Imported only inside op bodies (it imports dbt)."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliInvocation, DbtCliResource

from platform_assets.kinds.dataset.dbt_child import KEEP_ENV
from platform_assets.kinds.dataset.dbt_manifest import dbt_asset_key, dbt_executable
from platform_assets.kinds.dataset.dbt_projects import DbtProject
from platform_assets.settings import state_dir
from resources.artifact_store import atomic_write
from resources.warehouse import Warehouse

PARTIAL_PARSE = "partial_parse.msgpack"


class PlatformDbtTranslator(DagsterDbtTranslator):
    """Keys dbt nodes exactly as the definitions did (dbt_manifest.dbt_asset_key)."""

    def __init__(self, prefix: str) -> None:
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))
        self.prefix = prefix

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        return dbt_asset_key(dbt_resource_props, self.prefix)


@contextlib.contextmanager
def warehouse_env(warehouse: Warehouse, schema: str) -> Iterator[None]:
    """dbt reads its connection from the environment (profiles.yml): the warehouse and the schema,
    named in PLATFORM_DBT_KEEP as the only step variables `platform-dbt` passes on to dbt."""
    values = warehouse.dbt_env(schema)
    values[KEEP_ENV] = ",".join(sorted(values))
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def dbt_cli(warehouse: Warehouse, project: DbtProject) -> DbtCliResource:
    """The project as it is, with the platform's profile: nothing is written into its folder."""
    return _dbt_cli(str(project.dir), str(project.profiles_dir()), warehouse.dbt_target, dbt_executable())


@functools.cache
def _dbt_cli(project_dir: str, profiles_dir: str, target: str, executable: str) -> DbtCliResource:
    """One resource per project and target in a process, since each asks its executable for its
    version once (`dbt --version`, which also asks PyPI for dbt's latest releases: 2 s of CPU, up
    to 3 s more waiting where PyPI cannot be reached) before its first command."""
    return DbtCliResource(project_dir=project_dir, profiles_dir=profiles_dir, target=target, dbt_executable=executable)


def run_dbt(args: list[str], project: DbtProject, manifest: Path, warehouse: Warehouse, schema: str,
            target_path: Path | None = None, keep_parse: bool = False) -> DbtCliInvocation:
    """Run a dbt command to completion without raising; callers read run_results and dbt.log
    in `target_path` (a fresh folder under the state folder by default). `keep_parse`: the schema
    recurs (compile's placeholder), so the next command into it starts from this one's parse."""
    target_path = target_path or project.run_dir(args[0])
    with warehouse.exclusive(), warehouse_env(warehouse, schema), reused_parse(project, manifest, schema,
                                                                                 target_path, keep_parse):
        return dbt_cli(warehouse, project).cli(
            args, manifest=manifest, dagster_dbt_translator=PlatformDbtTranslator(project.key_prefix),
            raise_on_error=False, target_path=target_path).wait()


@contextlib.contextmanager
def reused_parse(project: DbtProject, manifest: Path, schema: str, target_path: Path, keep: bool = True
                 ) -> Iterator[None]:
    """dbt parses the whole project before each command unless its target folder holds the
    partial_parse.msgpack of an earlier parse; it checks that parse's files, vars, env vars and
    profile connection (schema and warehouse path included) itself and parses in full on any
    difference. One command's parse is handed to the next into the same schema of this instance
    and project content: 2 s of a 5 s `dbt compile`. dagster-dbt copies one only from the
    project's own target/, which the platform never writes."""
    content = manifest.parent.parent.name  # the manifest's cache folder is named by the project's content
    saved = state_dir() / "dbt" / project.key_prefix / "parse" / f"{content}-{schema}.msgpack"
    if saved.exists():
        target_path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(saved, target_path / PARTIAL_PARSE)
    yield
    produced = target_path / PARTIAL_PARSE
    if keep and produced.exists():  # whole or not at all: concurrent commands write their own parse
        atomic_write(saved, lambda tmp: shutil.copyfile(produced, tmp.name), mode="wb")


def build_selected(context: dg.AssetExecutionContext, project: DbtProject, manifest: Path) -> Iterator[Any]:
    """`dbt build` of the selected models into the project's dev schema; events become results of this op."""
    names = sorted({key.path[-1] for key in context.selected_asset_keys})
    selected_checks = context.selected_asset_check_keys
    warehouse = context.resources.warehouse
    target_path = project.run_dir("dev")
    with (warehouse.exclusive(), warehouse_env(warehouse, project.dev_schema),
          reused_parse(project, manifest, project.dev_schema, target_path)):
        invocation = dbt_cli(warehouse, project).cli(
            ["build", "--select", " ".join(names), "--indirect-selection", "cautious"], manifest=manifest,
            dagster_dbt_translator=PlatformDbtTranslator(project.key_prefix), raise_on_error=False,
            target_path=target_path)
        for event in invocation.stream():
            if isinstance(event, dg.AssetMaterialization) and event.asset_key in context.selected_asset_keys:
                yield dg.MaterializeResult(asset_key=event.asset_key, metadata=event.metadata)
            elif isinstance(event, dg.AssetCheckEvaluation) and event.asset_check_key in selected_checks:
                yield dg.AssetCheckResult(asset_key=event.asset_key, check_name=event.check_name,
                                          passed=event.passed, severity=event.severity, metadata=event.metadata)
    if not invocation.is_successful():
        raise dg.Failure(f"dbt build failed: {'; '.join(failed_nodes(invocation))}")


def failed_nodes(invocation: DbtCliInvocation) -> list[str]:
    """What failed, from run_results.json, or dbt's own errors when it stopped before writing it."""
    path = invocation.target_path / "run_results.json"
    if not path.exists():
        error = str(invocation.get_error() or "")
        said = error.split("Errors parsed from dbt logs:", 1)[1].strip() if "Errors parsed" in error else error
        return [f"dbt exited before running any node: {said or 'no error message'}"]
    return [
        f"{r['unique_id']}: {r['status']}{': ' + r['message'] if r.get('message') else ''}"
        for r in invocation.get_artifact("run_results.json").get("results", [])
        if r["status"] in ("error", "fail", "runtime error")
    ]
