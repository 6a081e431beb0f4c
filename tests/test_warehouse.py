"""The warehouse resource against both real databases: DuckDB files and a PostgreSQL server."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from resources.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse, WarehouseBusy
from tests.postgres_server import PostgresServer


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    if request.param == "duckdb":
        return DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    db: PostgresServer = request.getfixturevalue("postgres_db")
    return PostgresWarehouse(host=db.host, port=db.port, dbname=db.dbname, user=db.user, password=db.password)


def seed_versions(warehouse: Warehouse, versions: list[str], rows: int = 20000) -> None:
    statements = []
    for version in versions:
        statements.append(f"create schema audit_{version}")
        for table in ("orders", "customers"):
            statements.append(f"create table audit_{version}.{table} as "
                              f"select '{version}' as v, g as i from generate_series(1, {rows}) as t(g)")
    warehouse.run_in_transaction(statements)


def test_publishing_never_shows_readers_a_mix_of_versions(warehouse: Warehouse) -> None:
    """Two tables published together: a reader querying both in a loop always sees one version."""
    seed_versions(warehouse, ["v1", "v2"])
    warehouse.publish("audit_v1", "prod", ["orders", "customers"])
    seen: set[tuple] = set()
    stop = threading.Event()

    def read() -> None:
        with warehouse.connect() as con:
            cursor = con.cursor()
            while not stop.is_set():
                cursor.execute("select (select min(v) from prod.orders), (select max(v) from prod.orders), "
                               "(select min(v) from prod.customers)")
                seen.add(cursor.fetchone())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for round_ in range(60):
            warehouse.publish(f"audit_v{1 + round_ % 2}", "prod", ["orders", "customers"])
    finally:
        stop.set()
        reader.join(timeout=30)
    assert seen <= {("v1", "v1", "v1"), ("v2", "v2", "v2")}, seen
    assert len(seen) == 2, "the reader saw both versions while publishing went on"


def test_publish_describe_and_roll_back(warehouse: Warehouse) -> None:
    seed_versions(warehouse, ["v1", "v2"], rows=10)
    warehouse.run_in_transaction(["alter table audit_v2.orders add column extra integer"])
    warehouse.publish("audit_v1", "prod", ["orders"])
    assert warehouse.published_source("prod", "orders") == "audit_v1"
    warehouse.publish("audit_v2", "prod", ["orders"])
    described = warehouse.describe("prod", ["orders"])["orders"]
    assert described["rows"] == 10 and list(described["columns"]) == ["v", "i", "extra"]
    warehouse.publish("audit_v1", "prod", ["orders"])
    assert warehouse.published_source("prod", "orders") == "audit_v1"
    assert list(warehouse.describe("prod", ["orders"])["orders"]["columns"]) == ["v", "i"]
    assert warehouse.max_value("prod", "orders", "i") == 10
    assert warehouse.schema_exists("audit_v2") and not warehouse.schema_exists("audit_v3")
    with pytest.raises(LookupError, match=r"prod\.missing does not exist"):
        warehouse.describe("prod", ["missing"])


def test_failed_publish_changes_nothing(warehouse: Warehouse) -> None:
    seed_versions(warehouse, ["v1", "v2"], rows=5)
    warehouse.publish("audit_v1", "prod", ["orders", "customers"])
    warehouse.run_in_transaction(["drop table audit_v2.customers"])
    with pytest.raises(Exception, match="customers"):
        warehouse.publish("audit_v2", "prod", ["orders", "customers"])
    assert warehouse.published_source("prod", "orders") == "audit_v1"
    assert warehouse.published_source("prod", "customers") == "audit_v1"


HOLD = """
import sys
from resources.warehouse import DuckDBWarehouse
with DuckDBWarehouse(path=sys.argv[1]).exclusive():
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_duckdb_warehouse_admits_one_process_at_a_time_and_says_who_it_waited_for(tmp_path: Path) -> None:
    """The resource's own file lock: another process waits for the holder, or fails naming the file and the fix."""
    import subprocess
    import sys

    path = str(tmp_path / "w.duckdb")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=Path(__file__).parents[1])
    try:
        assert holder.stdout and holder.stdout.readline() == "held\n"
        with pytest.raises(WarehouseBusy, match=rf"w\.duckdb has been in use by process {holder.pid} .*"
                                                r"warehouse\.type: postgres"):
            DuckDBWarehouse(path=path, lock_wait_s=0.5).rows("select 1")
        threading.Timer(0.5, lambda: holder.communicate("\n")).start()
        patient = DuckDBWarehouse(path=path, lock_wait_s=20)
        with patient.exclusive(), patient.connect() as con:  # re-entrant: a dbt run connects while holding it
            assert con.execute("select 42").fetchall() == [(42,)]
    finally:
        holder.kill()


def test_a_jobs_output_replaces_the_table_whole_with_its_types(warehouse: Warehouse) -> None:
    import pandas as pd

    first = pd.DataFrame({"customer_id": ["a", "b"], "score": [0.25, float("nan")], "rank": [1, 2],
                          "flag": [True, False], "at": pd.to_datetime(["2026-12-04 02:00", "2026-12-04 02:01"])})
    assert warehouse.replace_table("prod_ml_team", "scores", first) == 2
    assert warehouse.rows('select customer_id, score, "rank", flag from prod_ml_team.scores order by 1') == [
        ("a", 0.25, 1, True), ("b", None, 2, False)]
    assert warehouse.describe("prod_ml_team", ["scores"])["scores"]["rows"] == 2

    with pytest.raises(ValueError, match="not a safe SQL identifier"):
        warehouse.replace_table("prod_ml_team", "scores", pd.DataFrame({"Bad Column": [1]}))
    assert warehouse.rows("select count(*) from prod_ml_team.scores") == [(2,)], "a refused write changes nothing"

    warehouse.replace_table("prod_ml_team", "scores", first.iloc[:1])
    assert warehouse.rows("select customer_id from prod_ml_team.scores") == [("a",)]
