"""The warehouse datasets are built in and published to: a DuckDB file by default, PostgreSQL in production.

Write-audit-publish: dbt builds a version into its own audit schema, which is never changed
afterwards; publishing to an environment replaces that environment's views, in one transaction,
so they read the new audit schema. Readers see all old or all new tables, never a mix, and
rolling back is publishing the previous version again: its audit schema is still there.
Both warehouses share this SQL; they differ in how to connect and how dbt reaches them.

DuckDB admits one writing process per file, so the DuckDB warehouse guards that itself
(`exclusive`): every connection and every dbt run holds a file lock beside the database, so any
instance (a fresh DAGSTER_HOME without dagster.yaml, `dagster dev`, the CLI, tests) runs dataset
steps one after the other instead of failing on DuckDB's own lock. PostgreSQL needs no such lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import time
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, ClassVar

import dagster as dg

from platform_assets.settings import PlatformSettings, state_dir

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
LOCK_WAIT_S = 60.0
_guard = threading.Lock()
_holds: dict[tuple[int, str], list[Any]] = {}  # (pid, lock file) -> [open lock file, depth]


class WarehouseBusy(Exception):
    """Another process used the DuckDB file for longer than the warehouse's `lock_wait_s`."""


def quote_safe(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"'{name}' is not a safe SQL identifier (lower-case letters, digits, '_')")
    return name


def published_schema(settings: PlatformSettings, environment: str, spec: Any) -> str:
    """An environment's schema for what a deliverable writes (a dataset's tables, a job's output): per
    owning team or per deliverable (platform.yaml `warehouse.namespace`)."""
    space = spec.owner if settings.warehouse.namespace == "team" else spec.name
    return quote_safe(f"{environment}_{space}".replace("-", "_"))


def table_claim(settings: PlatformSettings, spec: Any, table: str) -> str:
    """What writing `table` in the environments claims: one writer per table of a namespace."""
    space = f"team '{spec.owner}'" if settings.warehouse.namespace == "team" else f"deliverable '{spec.name}'"
    return f"the published table '{table}' of {space}"


def audit_schema(deliverable: str, version: str) -> str:
    """The schema one version of a dataset is built and audited in."""
    return quote_safe(f"audit__{deliverable}__{version}".replace("-", "_"))


class Warehouse(dg.ConfigurableResource):
    """What datasets need from a warehouse; subclasses say how to connect and how dbt gets there."""

    dbt_target: ClassVar[str]
    _VIEWS_SQL: ClassVar[str]

    @abstractmethod
    def connect(self, read_only: bool = False) -> contextlib.AbstractContextManager[Any]:
        """A DB-API connection in autocommit mode (transactions are explicit)."""

    @abstractmethod
    def location(self) -> str:
        """Where the data is, for people (never contains a password)."""

    @abstractmethod
    def dbt_env(self, schema: str) -> dict[str, str]:
        """Environment variables that point dbt's profile (dbt_project/profiles.yml) here."""

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Held around anything that writes (dbt runs, publishing); a no-op where writers may share."""
        return contextlib.nullcontext()

    def _param(self, sql: str) -> str:
        return sql

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self.connect(read_only=True) as con:
            cursor = con.cursor()
            cursor.execute(self._param(sql), list(params))
            return cursor.fetchall()

    def run_in_transaction(self, statements: list[str]) -> None:
        with self.connect() as con:
            cursor = con.cursor()
            cursor.execute("begin")
            try:
                for statement in statements:
                    cursor.execute(statement)
                cursor.execute("commit")
            except Exception:
                cursor.execute("rollback")
                raise

    def schema_exists(self, schema: str) -> bool:
        return bool(self.rows("select 1 from information_schema.schemata where schema_name = ?", [schema]))

    def describe(self, schema: str, tables: list[str]) -> dict[str, dict[str, Any]]:
        """Row count and column types of each table or view."""
        result: dict[str, dict[str, Any]] = {}
        for table in tables:
            columns = self.rows(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = ? and table_name = ? order by ordinal_position",
                [schema, table],
            )
            if not columns:
                raise LookupError(f"table {schema}.{table} does not exist in {self.location()}")
            [(count,)] = self.rows(f'select count(*) from "{quote_safe(schema)}"."{quote_safe(table)}"')
            result[table] = {"rows": count, "columns": dict(columns)}
        return result

    def frame(self, schema: str, table: str, where: str | None = None, limit: int | None = None) -> Any:
        """The table (the rows matching `where`, SQL the platform wrote; the first `limit`) as a
        pandas DataFrame, the same way on every warehouse (DB-API rows)."""
        import pandas as pd

        with self.connect(read_only=True) as con:
            cursor = con.cursor()
            cursor.execute(f'select * from "{quote_safe(schema)}"."{quote_safe(table)}"'
                           + (f" where {where}" if where else "") + (f" limit {int(limit)}" if limit else ""))
            columns = [description[0] for description in cursor.description]
            return pd.DataFrame.from_records(cursor.fetchall(), columns=columns)

    def max_value(self, schema: str, table: str, column: str) -> Any:
        [(value,)] = self.rows(
            f'select max("{quote_safe(column)}") from "{quote_safe(schema)}"."{quote_safe(table)}"'
        )
        return value

    def publish(self, source_schema: str, target_schema: str, tables: list[str]) -> dict[str, str]:
        """Point the views in `target_schema` (an environment's namespace) at `source_schema`, all
        tables in one transaction."""
        target = quote_safe(target_schema)
        statements = [f'create schema if not exists "{target}"']
        for table in tables:
            view = f'"{target}"."{quote_safe(table)}"'
            statements += [
                f"drop view if exists {view}",
                f'create view {view} as select * from "{quote_safe(source_schema)}"."{quote_safe(table)}"',
            ]
        self.run_in_transaction(statements)
        return {table: f"{target}.{table}" for table in tables}

    def replace_table(self, schema: str, table: str, frame: Any) -> int:
        """`schema`.`table` holds exactly the rows of `frame` (a pandas DataFrame), replaced in one
        transaction: readers see the previous rows or the new ones, never a part. Returns the rows."""
        target = f'"{quote_safe(schema)}"."{quote_safe(table)}"'
        columns = [quote_safe(str(column)) for column in frame.columns]
        types = ", ".join(f'"{column}" {_sql_type(dtype)}' for column, dtype in zip(columns, frame.dtypes, strict=True))
        placeholders = ", ".join("?" for _ in columns)
        rows = [tuple(None if _missing(value) else _plain(value) for value in row)
                for row in frame.itertuples(index=False, name=None)]
        with self.exclusive(), self.connect() as con:
            cursor = con.cursor()
            cursor.execute("begin")
            try:
                cursor.execute(f'create schema if not exists "{quote_safe(schema)}"')
                cursor.execute(f"drop table if exists {target}")
                cursor.execute(f"create table {target} ({types})")
                if rows:
                    cursor.executemany(self._param(f"insert into {target} values ({placeholders})"), rows)
                cursor.execute("commit")
            except Exception:
                cursor.execute("rollback")
                raise
        return len(rows)

    def create_views(self, schema: str, views: dict[str, str]) -> None:
        """Views `schema`.`name` as `select` (SQL the platform wrote), replaced in one transaction."""
        statements = [f'create schema if not exists "{quote_safe(schema)}"']
        for name, select in views.items():
            view = f'"{quote_safe(schema)}"."{quote_safe(name)}"'
            statements += [f"drop view if exists {view}", f"create view {view} as {select}"]
        self.run_in_transaction(statements)

    def published_source(self, schema: str, table: str) -> str | None:
        """The audit schema the view `schema`.`table` reads from (None if not published)."""
        found = self.rows(self._VIEWS_SQL, [schema, table])
        match = re.search(r'from\s+"?([a-z0-9_]+)"?\s*\.', found[0][0], re.IGNORECASE) if found else None
        return match.group(1) if match else None


def _sql_type(dtype: Any) -> str:
    """A column type both warehouses spell the same way, from a pandas dtype."""
    kind = getattr(dtype, "kind", "O")
    return {"b": "boolean", "i": "bigint", "u": "bigint", "f": "double precision", "M": "timestamp"}.get(kind, "text")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)  # NaN


def _plain(value: Any) -> Any:
    """numpy scalars and pandas timestamps as the Python values DB-API drivers take."""
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime()
    return value.item() if hasattr(value, "item") else value


class DuckDBWarehouse(Warehouse):
    """A DuckDB file; `path` defaults to `<state>/warehouse.duckdb`."""

    path: str | None = None
    lock_wait_s: float = 1800.0
    dbt_target: ClassVar[str] = "local"
    _VIEWS_SQL: ClassVar[str] = "select sql from duckdb_views() where schema_name = ? and view_name = ?"

    def file(self) -> Path:
        return Path(self.path) if self.path else state_dir() / "warehouse.duckdb"

    def location(self) -> str:
        return str(self.file())

    def dbt_env(self, schema: str) -> dict[str, str]:
        return {"PLATFORM_WAREHOUSE_PATH": str(self.file()), "DBT_SCHEMA": schema}

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """The file lock `<file>.lock`, waited for up to `lock_wait_s`; held once per process.

        DuckDB's limit is per process (threads of one process share its connections), and a reader
        needs the lock too: DuckDB refuses to open a file another process writes, even read-only.
        """
        lock = self.file().with_name(self.file().name + ".lock")
        key = (os.getpid(), str(lock))  # a forked child holds nothing of its parent's
        with _guard:
            if key not in _holds:
                _holds[key] = [self._acquire(lock), 0]
            _holds[key][1] += 1
        try:
            yield
        finally:
            with _guard:
                _holds[key][1] -= 1
                if not _holds[key][1]:
                    handle = _holds.pop(key)[0]
                    handle.seek(0)
                    handle.truncate()
                    handle.flush()
                    fcntl.flock(handle, fcntl.LOCK_UN)
                    handle.close()

    def _acquire(self, lock: Path) -> IO[str]:
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = lock.open("a+")
        deadline = time.monotonic() + self.lock_wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    handle.close()
                    raise WarehouseBusy(
                        f"the DuckDB warehouse {self.file()} has been in use by {holder} for over "
                        f"{self.lock_wait_s:.0f}s (DuckDB admits one writer at a time); nothing was changed. "
                        "Run again when it is done, raise warehouse.lock_wait_s, or use "
                        "warehouse.type: postgres to run dataset steps in parallel."
                    ) from None
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}")
        handle.flush()
        return handle

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[Any]:
        """Holds `exclusive`; still waits a while on DuckDB's own lock (a process outside the platform)."""
        with self.exclusive(), self._open(read_only) as connection:
            yield connection

    @contextlib.contextmanager
    def _open(self, read_only: bool) -> Iterator[Any]:
        import duckdb

        if read_only and not self.file().exists():
            read_only = False
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


class PostgresWarehouse(Warehouse):
    """A PostgreSQL database; give the password as `dg.EnvVar(...)`, never in a file."""

    host: str = "localhost"
    port: int = 5432
    dbname: str = "warehouse"
    user: str
    password: str = ""
    sslmode: str = "prefer"
    dbt_target: ClassVar[str] = "postgres"
    _VIEWS_SQL: ClassVar[str] = "select definition from pg_views where schemaname = ? and viewname = ?"

    def location(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"

    def dbt_env(self, schema: str) -> dict[str, str]:
        return {
            "PLATFORM_PG_HOST": self.host, "PLATFORM_PG_PORT": str(self.port), "PLATFORM_PG_USER": self.user,
            "PLATFORM_PG_PASSWORD": self.password, "PLATFORM_PG_DBNAME": self.dbname,
            "PLATFORM_PG_SSLMODE": self.sslmode, "DBT_SCHEMA": schema,
        }

    def _param(self, sql: str) -> str:
        return sql.replace("?", "%s")

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[Any]:
        import psycopg2

        connection = psycopg2.connect(host=self.host, port=self.port, dbname=self.dbname, user=self.user,
                                      password=self.password, sslmode=self.sslmode, connect_timeout=10)
        connection.autocommit = True  # transactions are explicit (run_in_transaction)
        try:
            yield connection
        finally:
            connection.close()
