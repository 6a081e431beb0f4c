"""Running dbt inside a step, with dagster-dbt. Imported only inside op bodies (it imports dbt)."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliInvocation, DbtCliResource

from platform_assets.kinds.dataset.dbt_child import KEEP_ENV
from platform_assets.kinds.dataset.dbt_manifest import dbt_asset_key, dbt_executable
from platform_assets.kinds.dataset.dbt_projects import DbtProject
from resources.warehouse import Warehouse


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
            target_path: Path | None = None) -> DbtCliInvocation:
    """Run a dbt command to completion without raising; callers read run_results and dbt.log
    in `target_path` (a fresh folder under the state folder by default)."""
    with warehouse.exclusive(), warehouse_env(warehouse, schema):
        return dbt_cli(warehouse, project).cli(
            args, manifest=manifest, dagster_dbt_translator=PlatformDbtTranslator(project.key_prefix),
            raise_on_error=False, target_path=target_path or project.run_dir(args[0])).wait()


def build_selected(context: dg.AssetExecutionContext, project: DbtProject, manifest: Path) -> Iterator[Any]:
    """`dbt build` of the selected models into the project's dev schema; events become results of this op."""
    names = sorted({key.path[-1] for key in context.selected_asset_keys})
    selected_checks = context.selected_asset_check_keys
    warehouse = context.resources.warehouse
    with warehouse.exclusive(), warehouse_env(warehouse, project.dev_schema):
        invocation = dbt_cli(warehouse, project).cli(
            ["build", "--select", " ".join(names), "--indirect-selection", "cautious"], manifest=manifest,
            dagster_dbt_translator=PlatformDbtTranslator(project.key_prefix), raise_on_error=False,
            target_path=project.run_dir("dev"))
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
