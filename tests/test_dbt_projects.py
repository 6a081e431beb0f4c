"""Datasets from several dbt projects: an external project written for dbt 1.7
(tests/fixtures/jaffle_shop, in the shape of dbt Labs' jaffle-shop) onboarded with nothing but a
deliverable.yaml per dataset, beside the platform's own project, with the real dbt CLI and DuckDB."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import duckdb
import psycopg2
import pytest
import yaml

from platform_assets.code_location import build_definitions
from platform_assets.handlers.base import BUILD_RECORD
from platform_assets.kinds.dataset.dbt_child import dbt_env
from platform_assets.settings import PROJECT_ROOT, load_settings
from resources.artifact_store import LocalArtifactStore
from tests.conftest import Platform, cli
from tests.postgres_server import PostgresServer

JAFFLE = PROJECT_ROOT / "tests" / "fixtures" / "jaffle_shop"
STAGES = ("build", "evaluate", "staging", "prod")


@pytest.fixture
def growth(datasets: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Platform:
    """The datasets platform with a second team, `growth`, which owns the external project's datasets."""
    teams = yaml.safe_load((PROJECT_ROOT / "teams.yaml").read_text())
    teams["teams"]["growth"] = {"description": "Growth analytics.", "members": ["gus"]}
    teams["members"]["gus"] = {"email": "gus@example.com"}
    (tmp_path / "teams.yaml").write_text(yaml.safe_dump(teams))
    monkeypatch.setenv("PLATFORM_TEAMS_FILE", str(tmp_path / "teams.yaml"))
    for name in ("customer-features", "customer-segments"):
        shutil.rmtree(datasets.catalog / name)
    return datasets


def dataset(platform: Platform, name: str, models: list[str], owner: str = "growth",
            project: Path | None = JAFFLE, **gates: object) -> Path:
    """A dataset deliverable: all an analytics engineer writes to onboard a model of their project."""
    folder = platform.catalog / name
    folder.mkdir()
    spec = {"name": name, "kind": "dataset", "owner": owner, "description": f"{', '.join(models)} of jaffle shop",
            "dataset": {"models": models, **({"project": os.path.relpath(project, folder)} if project else {})},
            "gates": {"freshness": None, **gates},
            "promotion": {"staging": {"mode": "auto"}, "prod": {"mode": "auto"}}}
    (folder / "deliverable.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder / "deliverable.yaml"


def untouched(folder: Path) -> str:
    """What git sees changed or added in `folder`, ignored files included (dbt's target/, logs/, .user.yml)."""
    return subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all", str(folder)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout


def test_an_external_project_reaches_prod_beside_the_platform_project_and_stays_unchanged(growth: Platform) -> None:
    dataset(growth, "jaffle-marts", ["customers", "orders"], row_count_min={"customers": 20, "orders": 60})
    dataset(growth, "jaffle-staging", ["stg_customers"])
    dataset(growth, "analytics-staging", ["stg_customers"], owner="analytics", project=None)
    before = untouched(JAFFLE)

    defs = build_definitions(growth.settings)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"jaffle_shop/customers", "jaffle_shop/stg_customers", "warehouse/stg_customers"} <= keys
    checks = {(k.asset_key.to_user_string(), k.name) for k in defs.resolve_asset_graph().asset_check_keys}
    assert ("jaffle_shop/orders", "relationships_orders_customer_id__customer_id__ref_customers_") in checks

    result = growth.materialize(*(f"{name}/{stage}" for name in ("jaffle-marts", "jaffle-staging", "analytics-staging")
                                  for stage in STAGES))

    assert result.success, [e for e in result.all_events if e.is_failure]
    with duckdb.connect(str(growth.home / "platform" / "warehouse.duckdb"), read_only=True) as con:
        def count(table: str) -> int:
            return con.execute(f"select count(*) from {table}").fetchone()[0]

        assert (count("prod_growth.customers"), count("prod_growth.orders")) == (20, 60)
        assert (count("prod_growth.stg_customers"), count("prod_analytics.stg_customers")) == (20, 2000)
    marts = growth.latest("jaffle-marts/build")
    relationships = "relationships_orders_customer_id__customer_id__ref_customers_"
    assert relationships in build_record("jaffle-marts")["tests"]["ran"]
    log = Path(marts["dbt_log"])
    assert log.is_file() and "Completed successfully" in log.read_text(), "the build's dbt log is kept"
    assert untouched(JAFFLE) == before == "", "dbt wrote nothing into the project"


def build_record(name: str) -> dict:
    store = LocalArtifactStore()
    version = max(store.base().joinpath(name).iterdir(), key=lambda p: p.stat().st_mtime).name
    return store.get_json(name, version, BUILD_RECORD)


def test_validate_names_each_dataset_problem_against_its_project(growth: Platform) -> None:
    marts = dataset(growth, "jaffle-marts", ["customers"])
    twin = dataset(growth, "jaffle-twin", ["customers"])
    dated = dataset(growth, "jaffle-orders", ["orders"], freshness={"column": "loaded_at", "max_age_hours": 24})
    typo = dataset(growth, "jaffle-typo", ["customer"])
    lost = dataset(growth, "jaffle-lost", ["stg_payments"], project=JAFFLE.parent / "no_such_project")
    broken_project = Path(shutil.copytree(JAFFLE, growth.catalog.parent / "jaffle_broken"))
    (broken_project / "dbt_project.yml").write_text(
        (JAFFLE / "dbt_project.yml").read_text().replace("name: jaffle_shop", "name: jaffle_broken"))
    (broken_project / "models" / "marts" / "schema.yml").write_text("version: 2\nmodels: [unclosed\n")
    broken = dataset(growth, "jaffle-broken", ["stg_orders"], project=broken_project)

    completed = cli("validate")

    assert completed.returncode == 1
    said = completed.stdout
    assert f"{marts}: field 'dataset.models': dbt model 'customers' of {JAFFLE} is also declared by {twin}" in said
    assert f"{twin}: field 'dataset.models': dbt model 'customers' of {JAFFLE} is also declared by {marts}" in said
    assert (f"{dated}: field 'gates.freshness.column': 'loaded_at' is not a column of orders "
            "(models/marts/schema.yml declares order_id, customer_id, amount)") in said
    assert f"{typo}: field 'dataset.models': 'customer' is not a model of the dbt project {JAFFLE}" in said
    assert f"{lost}: field 'dataset.project': " in said and "no dbt project there" in said
    assert f"{broken}: field 'dataset.project': dbt parse of {broken_project} failed" in said
    assert "models/marts/schema.yml" in said, "dbt's own message names the broken file"
    assert untouched(JAFFLE) == ""


def test_a_test_across_two_unrelated_datasets_is_a_validate_error(growth: Platform) -> None:
    """orders does not ref customers: no build selects both, so their relationships test would run in none."""
    dataset(growth, "jaffle-customers", ["customers"])
    dataset(growth, "jaffle-orders", ["orders"])

    completed = cli("validate")

    assert completed.returncode == 1
    assert ("dbt test relationships_orders_customer_id__customer_id__ref_customers_ (models/marts/schema.yml) reads "
            "models of jaffle-customers, jaffle-orders, which no dataset builds together") in completed.stdout


def test_a_test_spanning_two_datasets_runs_in_the_downstream_one(datasets: Platform) -> None:
    """customer_segments refs customer_features, so their relationships test runs in customer-segments only."""
    result = datasets.materialize("customer-features/build", "customer-segments/build")

    assert result.success, [e for e in result.all_events if e.is_failure]
    spanning = "relationships_customer_segments_customer_id__customer_id__ref_customer_features_"
    assert spanning in build_record("customer-segments")["tests"]["ran"]
    assert spanning not in build_record("customer-features")["tests"]["ran"]


def test_the_external_project_delivers_on_postgres_too(
    growth: Platform, postgres_db: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production warehouse: the platform's postgres outputs under jaffle_shop's profile name."""
    config = yaml.safe_load((PROJECT_ROOT / "platform.yaml").read_text())
    config["warehouse"] = {"type": "postgres", "host": postgres_db.host, "port": postgres_db.port,
                           "dbname": postgres_db.dbname, "user": postgres_db.user, "namespace": "dataset"}
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("PLATFORM_CONFIG", str(tmp_path / "platform.yaml"))
    monkeypatch.setenv("PLATFORM_PG_PASSWORD", postgres_db.password)
    growth.settings = load_settings()
    dataset(growth, "jaffle-marts", ["customers", "orders"], row_count_min={"customers": 20})
    dataset(growth, "analytics-staging", ["stg_customers"], owner="analytics", project=None)

    result = growth.materialize(*(f"{name}/{stage}" for name in ("jaffle-marts", "analytics-staging")
                                  for stage in STAGES))

    assert result.success, [e for e in result.all_events if e.is_failure]
    with psycopg2.connect(host=postgres_db.host, port=postgres_db.port, user=postgres_db.user,
                          password=postgres_db.password, dbname=postgres_db.dbname) as con:
        cursor = con.cursor()
        cursor.execute("select (select count(*) from prod_jaffle_marts.customers), "
                       "(select count(*) from prod_jaffle_marts.orders), "
                       "(select count(*) from prod_analytics_staging.stg_customers)")
        assert cursor.fetchone() == (20, 60, 2000)
    assert not (growth.home / "platform" / "warehouse.duckdb").exists(), "nothing went to DuckDB"
    assert untouched(JAFFLE) == ""


def test_a_project_reads_another_projects_published_table_through_a_source(datasets: Platform, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented cross-project reference: a source on the producer's namespace, keyed like its asset."""
    project = Path(shutil.copytree(JAFFLE, tmp_path / "jaffle_shop"))
    (project / "models" / "marts" / "sources.yml").write_text(yaml.safe_dump({"version": 2, "sources": [{
        "name": "analytics", "schema": "prod_analytics",
        "tables": [{"name": "customer_features",
                    "meta": {"dagster": {"asset_key": ["warehouse", "customer_features"]}}}]}]}))
    (project / "models" / "marts" / "churners.sql").write_text(
        "select customer_id from {{ source('analytics', 'customer_features') }} where churned\n")
    (project / "models" / "marts" / "seen.sql").write_text(  # what the project's Jinja can read
        "select '{{ env_var('PLATFORM_MODEL_TOKEN', 'absent') }}' as token, "
        "'{{ env_var('DAGSTER_HOME', 'absent') }}' as home\n")
    monkeypatch.setenv("PLATFORM_MODEL_TOKEN", "a-platform-secret")
    shutil.rmtree(datasets.catalog / "customer-segments")
    path = dataset(datasets, "churners", ["churners", "seen"], owner="analytics", project=project)
    spec = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**spec, "depends_on": ["customer-features"]}, sort_keys=False))

    graph = build_definitions(datasets.settings).resolve_asset_graph()
    assert dg.AssetKey(["warehouse", "customer_features"]) in graph.get(
        dg.AssetKey(["jaffle_shop", "churners"])).parent_keys
    result = datasets.materialize(*(f"{name}/{stage}" for name in ("customer-features", "churners")
                                    for stage in STAGES))

    assert result.success, [e for e in result.all_events if e.is_failure]
    with duckdb.connect(str(datasets.home / "platform" / "warehouse.duckdb"), read_only=True) as con:
        [(churners, churned)] = con.execute(
            "select (select count(*) from prod_analytics.churners), "
            "(select count(*) from prod_analytics.customer_features where churned)").fetchall()
        seen = con.execute("select token, home from prod_analytics.seen").fetchall()
    assert churners == churned > 0
    assert seen == [("absent", "absent")], "dbt ran without the platform's environment"


def test_dbt_gets_the_minimal_environment_its_settings_and_the_warehouse_variables_only() -> None:
    environ = {"PATH": "/usr/bin", "LANG": "C.UTF-8", "AWS_SECRET_ACCESS_KEY": "k", "PLATFORM_MODEL_TOKEN": "t",
               "DAGSTER_HOME": "/h", "DBT_SCHEMA": "audit_x", "DBT_TARGET_PATH": "/t",
               "PLATFORM_PG_PASSWORD": "p", "PLATFORM_DBT_KEEP": "PLATFORM_PG_PASSWORD,DBT_SCHEMA"}

    env = dbt_env(environ, {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false"})

    assert {k: v for k, v in env.items() if k not in ("HOME", "TMPDIR")} == {
        "PATH": "/usr/bin", "LANG": "C.UTF-8", "DBT_SCHEMA": "audit_x", "DBT_TARGET_PATH": "/t",
        "PLATFORM_PG_PASSWORD": "p", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1"}
    assert env["HOME"] != environ.get("HOME")
