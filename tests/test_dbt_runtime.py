"""dbt commands as the dataset stages run them (dbt_runtime.run_dbt): the real dbt CLI through
dagster-dbt, on a private copy of the platform's dbt project and a DuckDB warehouse of the test's own."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from platform_assets.kinds.dataset.dbt_manifest import ensure_manifest
from platform_assets.kinds.dataset.dbt_projects import platform_project
from platform_assets.kinds.dataset.dbt_runtime import run_dbt
from platform_assets.settings import PROJECT_ROOT
from resources.warehouse import DuckDBWarehouse

FULL = "Starting full parse"
PARTIAL = "Partial parsing enabled"


def compile_into(folder: Path, schema: str) -> str:
    """`dbt compile` of one model into `folder`; dbt's own log of it."""
    project = platform_project()
    invocation = run_dbt(["compile", "--select", "customer_features"], project, ensure_manifest(project),
                         DuckDBWarehouse(), schema, target_path=folder, keep_parse=True)
    assert invocation.is_successful(), (folder / "dbt.log").read_text()[-3000:]
    return (folder / "dbt.log").read_text()


def compiled_sql(folder: Path) -> str:
    return next((folder / "compiled").rglob("customer_features.sql")).read_text()


@pytest.mark.e2e
def test_a_command_into_the_same_schema_starts_from_the_last_parse_and_compiles_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A changed project is another manifest and so another saved parse (DbtProject.cache_dir); the
    # dataset pipeline tests edit models and see the new SQL built.
    monkeypatch.setenv("PLATFORM_DBT_PROJECT_DIR", str(shutil.copytree(
        PROJECT_ROOT / "dbt_project", tmp_path / "dbt_project", ignore=shutil.ignore_patterns("target", "logs",
                                                                                              "*.duckdb"))))
    monkeypatch.setenv("PLATFORM_STATE_DIR", str(tmp_path / "state"))

    first = compile_into(tmp_path / "first", "audit")
    second = compile_into(tmp_path / "second", "audit")
    saved = tmp_path / "state" / "dbt" / "warehouse" / "parse"
    assert FULL in first and PARTIAL not in first
    assert PARTIAL in second and FULL not in second, "the second compile parsed the project again"
    assert compiled_sql(tmp_path / "first") == compiled_sql(tmp_path / "second")
    assert {p.name.rsplit("-", 1)[1] for p in saved.glob("*.msgpack")} == {"audit.msgpack"}
    # A saved parse is only a hint: dbt checks the connection itself (the schema is part of it).
    [audit] = saved.glob("*-audit.msgpack")
    shutil.copyfile(audit, audit.with_name(audit.name.replace("-audit.", "-audit_other.")))
    assert "profile has changed" in compile_into(tmp_path / "stale", "audit_other")

