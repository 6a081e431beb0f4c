"""The dbt project in dbt_project/ runs on its own: the real dbt CLI (dbt-duckdb) against a real DuckDB
file in a temporary folder, with dbt's artefacts and logs kept out of the repository. Two builds in all:
the project as committed, and a copy with corrupted seed rows whose build must fail on the right tests."""

from __future__ import annotations

import csv
import filecmp
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT = REPO / "dbt_project"
SEEDS = PROJECT / "seeds"
GENERATOR = PROJECT / "scripts" / "generate_seeds.py"
SEED_FILES = ("raw_customers.csv", "raw_orders.csv", "raw_product_events.csv")
SEGMENTS = {"champion", "loyal", "promising", "at_risk", "dormant", "new"}


@dataclass
class Build:
    result: subprocess.CompletedProcess
    work: Path
    database: Path
    schema: str

    def run_results(self) -> dict[str, str]:
        """unique_id -> status of every node of the run."""
        data = json.loads((self.work / "target" / "run_results.json").read_text())
        return {r["unique_id"]: r["status"] for r in data["results"]}

    def query(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.database), read_only=True) as con:
            return con.execute(sql.replace("{schema}", self.schema)).fetchall()


def dbt_executable() -> str:
    found = shutil.which("dbt", path=str(Path(sys.executable).parent)) or shutil.which("dbt")
    assert found, "the dbt CLI is not installed next to this interpreter nor on PATH"
    return found


def dbt_build(project_dir: Path, work: Path, schema: str) -> Build:
    """`dbt build` of project_dir into work/warehouse.duckdb, schema `schema`, artefacts under work."""
    work.mkdir(parents=True, exist_ok=True)
    database = work / "warehouse.duckdb"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBT_")}
    env.update(
        PLATFORM_WAREHOUSE_PATH=str(database),
        DBT_SCHEMA=schema,
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        DBT_VERSION_CHECK="false",
    )
    cmd = [
        dbt_executable(), "build",
        "--project-dir", str(project_dir), "--profiles-dir", str(project_dir),
        "--target-path", str(work / "target"), "--log-path", str(work / "logs"),
    ]
    result = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True, timeout=300, check=False)
    return Build(result, work, database, schema)


def output(build: Build) -> str:
    return f"dbt exited {build.result.returncode}\n{build.result.stdout[-6000:]}\n{build.result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    left_before = {name: (PROJECT / name).exists() for name in ("target", "logs")}
    done = dbt_build(PROJECT, tmp_path_factory.mktemp("dbt_build"), schema="audit_test_build")
    assert done.result.returncode == 0, output(done)
    # dbt wrote its artefacts and logs under the temporary folder, not into the project.
    assert (done.work / "target" / "run_results.json").is_file()
    assert {name: (PROJECT / name).exists() for name in left_before} == left_before
    return done


def count_rows(path: Path) -> int:
    with path.open(newline="") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


def test_build_is_green_and_lands_in_the_target_schema(build: Build) -> None:
    statuses = build.run_results()
    assert statuses and set(statuses.values()) <= {"success", "pass"}, statuses
    assert any(uid.startswith("test.") for uid in statuses), "no data test ran"
    relations = build.query("select table_schema, table_name from information_schema.tables")
    assert {schema for schema, _ in relations} == {build.schema}
    assert {name for _, name in relations} >= {
        "raw_customers", "raw_orders", "raw_product_events",
        "stg_customers", "stg_orders", "stg_product_events",
        "customer_features", "customer_segments",
    }


def test_customer_features_one_row_per_customer_with_a_plausible_churn_share(build: Build) -> None:
    customers = count_rows(SEEDS / "raw_customers.csv")
    [(rows, distinct, churned)] = build.query(
        "select count(*), count(distinct customer_id), sum(case when churned then 1 else 0 end)"
        " from {schema}.customer_features"
    )
    assert rows == distinct == customers
    assert 0.10 <= churned / rows <= 0.40, f"churn share {churned / rows:.3f}"
    [(stale,)] = build.query(
        "select count(*) from {schema}.customer_features where loaded_at < now() - interval 1 hour"
    )
    assert stale == 0, "loaded_at is not the time of the build"


def test_customer_segments_cover_every_customer_with_several_segments(build: Build) -> None:
    segments = dict(build.query("select segment, count(*) from {schema}.customer_segments group by segment"))
    assert set(segments) <= SEGMENTS
    assert len(segments) >= 3, segments
    assert sum(segments.values()) == count_rows(SEEDS / "raw_customers.csv")


def test_seed_generator_is_deterministic_and_matches_the_committed_seeds(tmp_path: Path) -> None:
    for run in ("first", "second"):
        subprocess.run([sys.executable, str(GENERATOR), "--out", str(tmp_path / run)],
                       check=True, capture_output=True, timeout=120)
    for name in SEED_FILES:
        assert filecmp.cmp(tmp_path / "first" / name, tmp_path / "second" / name, shallow=False), name
        assert filecmp.cmp(tmp_path / "first" / name, SEEDS / name, shallow=False), (
            f"{name} differs from the generator's output: rerun {GENERATOR.relative_to(REPO)}")
    assert sum((SEEDS / name).stat().st_size for name in SEED_FILES) < 1_600_000


def test_a_corrupted_seed_fails_the_build_on_the_right_tests(tmp_path: Path) -> None:
    project = Path(shutil.copytree(PROJECT, tmp_path / "project", ignore=shutil.ignore_patterns(
        "target", "logs", "dbt_packages", "*.duckdb", "*.duckdb.wal", "__pycache__")))
    orders_csv = project / "seeds" / "raw_orders.csv"
    with orders_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[0]["customer_id"] = "999999"  # no such customer: relationships test on stg_orders
    rows[1]["amount"] = "-12.50"  # negative amount: singular test
    with orders_csv.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)

    failed = dbt_build(project, tmp_path / "work", schema="audit_test_corrupted")

    assert failed.result.returncode != 0, output(failed)
    statuses = failed.run_results()
    failing = sorted(uid for uid, status in statuses.items() if status in {"fail", "error"})
    prefixes = ("test.platform_warehouse.relationships_stg_orders_customer_id",
                "test.platform_warehouse.assert_order_amounts_not_negative")
    assert len(failing) == 2 and all(any(uid.startswith(p) for uid in failing) for p in prefixes), failing
    # The marts downstream of the failed tests are not built.
    assert statuses["model.platform_warehouse.customer_features"] == "skipped"
