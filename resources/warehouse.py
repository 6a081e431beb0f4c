"""The warehouse datasets are built in and published to (DuckDB file by default).

Write-audit-publish: dbt builds a version into its own audit schema, which is never changed
afterwards; publishing to an environment replaces that environment's views, in one transaction,
so they point at the new audit schema. Readers see all old or all new tables, never a mix, and
rolling back is publishing the previous version again: its audit schema is still there.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg

from platform_assets.settings import state_dir

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
LOCK_WAIT_S = 60.0


def audit_schema(deliverable: str, version: str) -> str:
    """The schema one version of a dataset is built and audited in."""
    return quote_safe(f"audit__{deliverable}__{version}".replace("-", "_"))


def env_schema(env: str) -> str:
    return quote_safe(env.replace("-", "_"))


def quote_safe(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"'{name}' is not a safe SQL identifier (lower-case letters, digits, '_')")
    return name


class DuckDBWarehouse(dg.ConfigurableResource):
    """A DuckDB file; `path` defaults to `<state>/warehouse.duckdb`."""

    path: str | None = None

    def file(self) -> Path:
        return Path(self.path) if self.path else state_dir() / "warehouse.duckdb"

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[Any]:
        """A connection; waits while another process holds DuckDB's single-writer file lock."""
        import duckdb

        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                connection = duckdb.connect(str(self.file()), read_only=read_only)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.25)
        try:
            yield connection
        finally:
            connection.close()

    def describe(self, schema: str, tables: list[str]) -> dict[str, dict[str, Any]]:
        """Row count and column types of each table, as published or audited."""
        result: dict[str, dict[str, Any]] = {}
        with self.connect(read_only=True) as con:
            for table in tables:
                columns = con.execute(
                    "select column_name, data_type from information_schema.columns "
                    "where table_schema = ? and table_name = ? order by ordinal_position",
                    [schema, table],
                ).fetchall()
                if not columns:
                    raise LookupError(f"table {schema}.{table} does not exist in {self.file()}")
                rows = con.execute(f'select count(*) from "{schema}"."{quote_safe(table)}"').fetchone()[0]
                result[table] = {"rows": rows, "columns": dict(columns)}
        return result

    def schema_exists(self, schema: str) -> bool:
        if not self.file().exists():
            return False
        with self.connect(read_only=True) as con:
            return bool(con.execute("select 1 from information_schema.schemata where schema_name = ?",
                                    [schema]).fetchone())

    def max_value(self, schema: str, table: str, column: str) -> Any:
        with self.connect(read_only=True) as con:
            return con.execute(
                f'select max("{quote_safe(column)}") from "{quote_safe(schema)}"."{quote_safe(table)}"'
            ).fetchone()[0]

    def publish(self, source_schema: str, env: str, tables: list[str]) -> dict[str, str]:
        """Point `env`'s views at `source_schema`, all tables in one transaction."""
        target = env_schema(env)
        with self.connect() as con:
            con.execute("begin transaction")
            try:
                con.execute(f'create schema if not exists "{target}"')
                for table in tables:
                    con.execute(
                        f'create or replace view "{target}"."{quote_safe(table)}" as '
                        f'select * from "{quote_safe(source_schema)}"."{quote_safe(table)}"'
                    )
                con.execute("commit")
            except Exception:
                con.execute("rollback")
                raise
        return {table: f"{target}.{table}" for table in tables}

    def published_source(self, env: str, table: str) -> str | None:
        """The audit schema `env`'s view of `table` reads from (None if not published)."""
        with self.connect(read_only=True) as con:
            row = con.execute(
                "select sql from duckdb_views() where schema_name = ? and view_name = ?", [env_schema(env), table]
            ).fetchone()
        match = re.search(r'from\s+"?([a-z0-9_]+)"?\s*\.', row[0], re.IGNORECASE) if row else None
        return match.group(1) if match else None

    def drop_schemas(self, schemas: list[str]) -> None:
        with self.connect() as con:
            for schema in schemas:
                con.execute(f'drop schema if exists "{quote_safe(schema)}" cascade')
