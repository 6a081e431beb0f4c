"""Datasets through the pipeline with the real dbt CLI and a real DuckDB file.

Each test gets its own DAGSTER_HOME (so its own warehouse file) and its own copy of the dbt
project, which it may break the way an analytics engineer would."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import psycopg2
import pytest
import yaml

from platform_assets.code_location import build_definitions
from platform_assets.factory import CATALOG_KEY
from platform_assets.settings import PROJECT_ROOT, dbt_project_dir, load_settings
from resources.warehouse import DuckDBWarehouse
from tests.conftest import Platform, cli, copy_deliverable, materialize_with_cli, status_json
from tests.postgres_server import PostgresServer

DATASET = "customer-features"
THROUGH_PROD = [f"{DATASET}/build", f"{DATASET}/evaluate", f"{DATASET}/staging", f"{DATASET}/prod"]


@pytest.fixture
def delivered(datasets: Platform) -> Platform:
    result = datasets.materialize(*THROUGH_PROD)
    assert result.success, [e for e in result.all_events if e.is_failure]
    return datasets


def use_postgres(postgres_db: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """platform.yaml with the PostgreSQL warehouse `postgres_db`, for this process and its children."""
    config = yaml.safe_load((PROJECT_ROOT / "platform.yaml").read_text())
    config["warehouse"] = {"type": "postgres", "host": postgres_db.host, "port": postgres_db.port,
                           "dbname": postgres_db.dbname, "user": postgres_db.user}
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("PLATFORM_CONFIG", str(tmp_path / "platform.yaml"))
    monkeypatch.setenv("PLATFORM_PG_PASSWORD", postgres_db.password)


def warehouse_file(platform: Platform) -> Path:
    return platform.home / "platform" / "warehouse.duckdb"


def prod_rows(platform: Platform, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse_file(platform)), read_only=True) as con:
        return con.execute(sql).fetchall()


def gate(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_cli_materialize_publishes_tables_a_plain_duckdb_client_reads(datasets: Platform) -> None:
    materialize_with_cli(THROUGH_PROD)
    [(rows, churned, customers)] = prod_rows(
        datasets,
        "select count(*), avg(churned::int), count(distinct customer_id) from prod_analytics.customer_features")
    assert rows == customers == 2000
    assert 0.1 < churned < 0.4
    rows_by_name = {row["name"]: row for row in status_json()}
    version = datasets.latest(f"{DATASET}/build")["version"]
    assert rows_by_name[DATASET]["kind"] == "dataset"
    assert rows_by_name[DATASET]["versions"] == {"staging": version, "prod": version}
    assert rows_by_name[DATASET]["endpoint"] == "prod_analytics.customer_features"
    assert rows_by_name["customer-segments"]["versions"] == {"staging": None, "prod": None}


def test_delivery_records_version_rows_tests_and_published_schema(delivered: Platform) -> None:
    build = delivered.latest(f"{DATASET}/build")
    version, schema = build["version"], build["audit_schema"]
    assert schema == f"audit__customer_features__{version}"
    assert build["rows/customer_features"] == 2000
    columns = {column.name: column.type for column in build["schema/customer_features"].columns}
    assert columns["churned"] == "BOOLEAN" and "loaded_at" in columns
    evaluated = delivered.latest(f"{DATASET}/evaluate")
    assert evaluated["gates_passed"] is True
    assert delivered.latest(f"{DATASET}/prod")["tables"] == ["prod_analytics.customer_features"]
    warehouse = DuckDBWarehouse(path=str(warehouse_file(delivered)))
    assert warehouse.published_source("prod_analytics", "customer_features") == schema


def test_failing_dbt_test_fails_the_gate_and_prod_keeps_its_tables(delivered: Platform) -> None:
    served = delivered.latest(f"{DATASET}/prod")
    seeds = dbt_project_dir() / "seeds" / "raw_orders.csv"
    lines = seeds.read_text().splitlines()
    header, first = lines[0].split(","), lines[1].split(",")
    first[header.index("amount")] = "-12.50"
    seeds.write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")

    result = delivered.materialize(*THROUGH_PROD)

    assert not result.success
    evaluation = gate(result, "dbt_tests")
    assert not evaluation.passed
    assert "assert_order_amounts_not_negative" in evaluation.description
    assert "customer_features" in evaluation.description, "the skipped model is named too"
    for other in ("row_count_min", "freshness", "schema_contract"):
        reason = gate(result, other).description
        assert reason.startswith("not evaluated: customer_features was not built because "), reason
        assert "assert_order_amounts_not_negative" in reason
    log = Path(delivered.latest(f"{DATASET}/build")["dbt_log"])
    assert "Failure in test assert_order_amounts_not_negative" in log.read_text(), "the build's dbt log is kept"
    assert delivered.latest(f"{DATASET}/prod")["version"] == served["version"]
    assert DuckDBWarehouse(path=str(warehouse_file(delivered))).published_source(
        "prod_analytics", "customer_features") == served["audit_schema"]
    assert prod_rows(delivered, "select count(*) from prod_analytics.customer_features") == [(2000,)]


def test_removed_column_fails_schema_contract_unless_allowed(delivered: Platform) -> None:
    served = delivered.latest(f"{DATASET}/prod")
    edit(dbt_project_dir() / "models" / "marts" / "customer_features.sql", "    c.marketing_opt_in,\n", "")

    result = delivered.materialize(*THROUGH_PROD)

    assert not result.success
    contract = gate(result, "schema_contract")
    assert not contract.passed
    assert contract.metadata["breaking_changes"].value == ["customer_features.marketing_opt_in removed"]
    assert gate(result, "dbt_tests").passed
    assert delivered.latest(f"{DATASET}/prod")["version"] == served["version"]
    assert ("marketing_opt_in",) in prod_rows(
        delivered, "select column_name from information_schema.columns "
                   "where table_schema = 'prod_analytics' and table_name = 'customer_features'")

    edit(delivered.catalog / DATASET / "deliverable.yaml", "allow_breaking: false", "allow_breaking: true")
    allowed = delivered.materialize(*THROUGH_PROD)
    assert allowed.success
    assert gate(allowed, "schema_contract").passed
    assert delivered.latest(f"{DATASET}/prod")["version"] != served["version"]


def test_gates_set_to_null_are_off(delivered: Platform) -> None:
    """`freshness: null` and `schema_contract: null`: a model without load time ships, a removed column too."""
    edit(dbt_project_dir() / "models" / "marts" / "customer_features.sql", "    c.marketing_opt_in,\n", "")
    spec = delivered.catalog / DATASET / "deliverable.yaml"
    edit(spec, "freshness: {column: loaded_at, max_age_hours: 24}", "freshness: {column: no_such_column}")
    refused = delivered.materialize(f"{DATASET}/build", f"{DATASET}/evaluate")
    assert not gate(refused, "freshness").passed and not gate(refused, "schema_contract").passed

    edit(spec, "freshness: {column: no_such_column}", "freshness: null")
    edit(spec, "schema_contract: {allow_breaking: false}", "schema_contract: null")
    result = delivered.materialize(*THROUGH_PROD)

    assert result.success, [e for e in result.all_events if e.is_failure]
    assert gate(result, "freshness").description == "off: the spec sets gates.freshness to null"
    assert gate(result, "schema_contract").description == "off: the spec sets gates.schema_contract to null"


def test_fresh_instance_without_dagster_yaml_materializes_every_dataset_and_the_notebook(
    datasets: Platform,
) -> None:
    """No `duckdb` pool (no dagster.yaml): the warehouse's own lock keeps parallel dataset steps apart."""
    (datasets.home / "dagster.yaml").unlink()
    copy_deliverable("segmentation-report", datasets.catalog)
    keys = [f"{name}/{stage}" for name in ("customer-features", "customer-segments", "segmentation-report")
            for stage in ("build", "evaluate", "staging", "prod")]
    materialize_with_cli(keys)
    assert prod_rows(datasets, "select count(*) from prod_analytics.customer_features") == [(2000,)]
    assert prod_rows(datasets, "select count(*) > 0 from prod_analytics.customer_segments") == [(True,)]
    assert datasets.latest("segmentation-report/prod")["healthy"] is True


def test_dbt_models_are_assets_with_lineage_checks_and_team_groups(datasets: Platform) -> None:
    defs = build_definitions(datasets.settings)
    graph = defs.resolve_asset_graph()
    key = dg.AssetKey.from_user_string
    assert key("warehouse/stg_orders") in graph.get(key("warehouse/customer_features")).parent_keys
    assert key("warehouse/customer_features") in graph.get(key(f"{DATASET}/build")).parent_keys
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    assert specs["warehouse/customer_features"].group_name == "analytics"
    assert specs["warehouse/customer_features"].owners == ["team:analytics"]
    checks = {(c.asset_key.to_user_string(), c.name) for a in defs.assets for c in a.check_specs}
    assert ("warehouse/stg_orders", "assert_order_amounts_not_negative") in checks
    assert any(k == "warehouse/customer_features" and n.startswith("unique_") for k, n in checks)


def test_dbt_pool_and_kind_tag_follow_the_warehouse_type(datasets: Platform) -> None:
    """DuckDB's single writer is a DuckDB limit: on PostgreSQL the dbt and dataset steps take no pool."""
    key = dg.AssetKey.from_user_string
    postgres = datasets.settings.model_copy(
        update={"warehouse": datasets.settings.warehouse.model_copy(update={"type": "postgres", "user": "dbt"})})
    shapes = {}
    for settings in (datasets.settings, postgres):
        defs = build_definitions(settings)
        dbt = defs.resolve_assets_def(key("warehouse/customer_features"))
        shapes[settings.warehouse.type] = (dbt.op.pool, dbt.specs_by_key[key("warehouse/customer_features")].kinds,
                                           defs.resolve_assets_def(key(f"{DATASET}/build")).op.pool)
    assert shapes == {"duckdb": ("duckdb", {"dbt", "duckdb"}, "duckdb"),
                      "postgres": (None, {"dbt", "postgres"}, None)}


def test_materializing_dbt_models_runs_their_tests_as_checks(datasets: Platform) -> None:
    result = datasets.materialize("warehouse/raw_customers", "warehouse/stg_customers")
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"warehouse/raw_customers", "warehouse/stg_customers"}
    evaluations = result.get_asset_check_evaluations()
    assert evaluations and all(e.passed for e in evaluations)
    assert {e.asset_key.to_user_string() for e in evaluations} <= {"warehouse/raw_customers",
                                                                   "warehouse/stg_customers"}
    assert prod_rows(datasets, "select count(*) from dev.stg_customers") == [(2000,)]


def test_customer_features_through_prod_on_postgres(
    datasets: Platform, postgres_db: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production warehouse: the same pipeline, dbt's postgres target, a real server."""
    use_postgres(postgres_db, tmp_path, monkeypatch)
    datasets.settings = load_settings()

    result = datasets.materialize(*THROUGH_PROD)

    assert result.success, [e for e in result.all_events if e.is_failure]
    assert all(e.passed for e in result.get_asset_check_evaluations())
    build = datasets.latest(f"{DATASET}/build")
    with psycopg2.connect(host=postgres_db.host, port=postgres_db.port, user=postgres_db.user,
                          password=postgres_db.password, dbname=postgres_db.dbname) as con:
        cursor = con.cursor()
        cursor.execute("select count(*), count(distinct customer_id) from prod_analytics.customer_features")
        assert cursor.fetchone() == (2000, 2000)
        cursor.execute("select definition from pg_views where schemaname = 'prod_analytics'")
        assert build["audit_schema"] in cursor.fetchone()[0]
    assert datasets.latest(f"{DATASET}/prod")["warehouse"].startswith("postgresql://platform@")
    assert not (datasets.home / "platform" / "warehouse.duckdb").exists(), "nothing went to DuckDB"


def test_on_postgres_two_datasets_build_at_the_same_time(
    datasets: Platform, postgres_db: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No pool on PostgreSQL: one run's two dataset builds (different deliverables) overlap on the
    multiprocess executor, as the run's step timeline shows (each step's start and success events).
    On DuckDB the `duckdb` pool (limit 1 in deploy/dagster.local.yaml) runs them one after the other."""
    use_postgres(postgres_db, tmp_path, monkeypatch)
    materialize_with_cli([f"{name}/build" for name in (DATASET, "customer-segments")])  # a fresh process
    [run] = datasets.instance.get_run_records(limit=1)
    steps: dict[str, dict[str, float]] = {}
    for record in datasets.instance.get_records_for_run(run.dagster_run.run_id).records:
        event = record.event_log_entry
        if event.dagster_event and event.dagster_event.event_type_value in ("STEP_START", "STEP_SUCCESS"):
            steps.setdefault(event.step_key, {})[event.dagster_event.event_type_value] = event.timestamp
    (a_start, a_end), (b_start, b_end) = ((t["STEP_START"], t["STEP_SUCCESS"]) for t in steps.values())
    assert len(steps) == 2 and max(a_start, b_start) < min(a_end, b_end), f"the builds did not overlap: {steps}"


def test_dbt_project_that_does_not_parse_takes_nothing_else_down(datasets: Platform) -> None:
    marts = dbt_project_dir() / "models" / "marts" / "_marts.yml"
    marts.write_text(marts.read_text() + "\n  - name: [unclosed\n")

    defs = build_definitions(datasets.settings)

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "recommendations-api/prod" in keys and f"{DATASET}/prod" in keys
    assert "warehouse/stg_orders" not in keys, "the dbt models are left out"
    catalog = defs.resolve_assets_def(CATALOG_KEY).specs_by_key[CATALOG_KEY]
    assert "kind 'dataset': dbt parse of" in catalog.metadata["errors_at_load"].value
    validated = cli("validate")
    assert validated.returncode == 1
    assert f"kind 'dataset': dbt parse of {dbt_project_dir()} failed" in validated.stdout
    result = datasets.materialize(f"{DATASET}/build")
    assert not result.success
    message = result.failure_data_for_node("customer_features__build").error.message
    assert "customer-features could not be built: dbt parse of" in message and "_marts.yml" in message


def test_validate_and_the_catalog_asset_name_a_model_the_dbt_project_lacks(datasets: Platform) -> None:
    spec = datasets.catalog / DATASET / "deliverable.yaml"
    edit(spec, "models: [customer_features]", "models: [customer_featurez]")
    edit(spec, "row_count_min: {customer_features: 1000}", "row_count_min: {customer_featurez: 1000}")
    expected = (f"kind 'dataset': {spec}: field 'dataset.models': 'customer_featurez' is not a model of the dbt "
                f"project {dbt_project_dir()}; add it there or publish one of: ")

    validated = cli("validate")

    assert validated.returncode == 1, validated.stdout
    assert expected in validated.stdout
    catalog = build_definitions(load_settings()).resolve_assets_def(CATALOG_KEY).specs_by_key[CATALOG_KEY]
    assert expected in catalog.metadata["errors_at_load"].value
