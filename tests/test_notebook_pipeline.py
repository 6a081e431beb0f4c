"""The notebook kind through the pipeline: real papermill, a real kernel, real DuckDB, real nbconvert.

Each test delivers `customer-segments` and then `segmentation-report` to prod on a fresh
DAGSTER_HOME, then changes the copied notebook or spec the way a data scientist would.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg
import nbformat
import pytest

from resources.report_store import LocalReportStore
from tests.conftest import Platform, copy_deliverable, materialize_with_cli, status_json

REPORT = "segmentation-report"
NOTEBOOK = "segmentation_report.ipynb"
SEGMENTS_THROUGH_PROD = [f"customer-segments/{stage}" for stage in ("build", "evaluate", "staging", "prod")]
THROUGH_PROD = [f"{REPORT}/{stage}" for stage in ("build", "evaluate", "staging", "prod")]


@pytest.fixture
def reported(datasets: Platform) -> Platform:
    """The demo report published in staging and prod, on the published customer segments."""
    copy_deliverable(REPORT, datasets.catalog)
    result = datasets.materialize(*SEGMENTS_THROUGH_PROD, *THROUGH_PROD)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    assert all(e.passed for e in result.get_asset_check_evaluations()), "gates and healthy checks pass"
    return datasets


def gate(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


def current_report(env: str) -> dict | None:
    return LocalReportStore().current(env, REPORT)


def edit_cell(platform: Platform, marker: str, source: str) -> None:
    """Replace the source of the notebook cell that contains `marker`, as a data scientist would."""
    path = platform.catalog / REPORT / NOTEBOOK
    nb = nbformat.read(path, as_version=4)
    [cell] = [c for c in nb.cells if marker in c.source]
    cell.source = source
    nbformat.write(nb, path)


def test_cli_delivers_the_report_to_prod_with_chart_and_figures(datasets: Platform) -> None:
    """The README's command on a fresh DAGSTER_HOME: each step in its own process, the kernel under it."""
    copy_deliverable(REPORT, datasets.catalog)
    assert datasets.materialize(*SEGMENTS_THROUGH_PROD).success
    materialize_with_cli(THROUGH_PROD)
    build = datasets.latest(f"{REPORT}/build")
    version = build["version"]
    assert build["executes"] == "all 8 cells ran" and build["kernel_python"] == sys.executable
    assert build["outputs"]["customers"] == 2000 and build["outputs"]["segments"] >= 3
    segments_schema = datasets.latest("customer-segments/build")["audit_schema"]
    assert build["inputs"] == {"customer-segments": segments_schema}, "reads the exact data it is pinned to"
    assert datasets.latest(f"{REPORT}/evaluate")["gates_passed"] is True

    prod = datasets.latest(f"{REPORT}/prod")
    published = current_report("prod")
    assert prod["version"] == published["version"] == version
    assert prod["url"] == published["url"] and prod["url"].startswith("file://")
    html = Path(published["path"]).read_text()
    assert 'src="data:image/png;base64,' in html, "the chart is embedded"
    assert "2,000 customers" in html and "customer_segments" in html
    assert segments_schema in html, "the report says which data it was computed on"
    assert current_report("staging")["version"] == version

    executed = nbformat.read(build["executed_notebook"], as_version=4)
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for c in executed.cells for o in c.get("outputs", [])), "the executed notebook keeps its outputs"
    [injected] = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert "inputs/customer-segments/customer_segments.parquet" in injected.source, "it reads an exported file"
    assert "warehouse" not in injected.source and "password" not in injected.source
    [row] = [r for r in status_json() if r["name"] == REPORT]
    assert row["versions"] == {"staging": version, "prod": version} and row["endpoint"] == prod["url"]


def test_failed_gates_are_refused_and_prod_keeps_its_report(reported: Platform) -> None:
    before = current_report("prod")
    spec = reported.catalog / REPORT / "deliverable.yaml"
    spec.write_text(spec.read_text().replace('segments: ">= 3"', 'segments: ">= 12"'))

    unmet = reported.materialize(*THROUGH_PROD)

    assert not unmet.success
    assert reported.latest(f"{REPORT}/build")["reused"] is True, "gates are not part of the version"
    outputs = gate(unmet, "outputs")
    assert not outputs.passed and "segments is 6, expected >= 12" in outputs.description
    assert outputs.metadata["expectations"].value["segments"] == ">= 12"
    assert reported.latest(f"{REPORT}/evaluate")["failed_gates"] == ["outputs"]
    assert current_report("prod") == before

    spec.write_text(spec.read_text().replace('segments: ">= 12"', 'segments: ">= 3"'))
    edit_cell(reported, "customers = int(", "customers = int(segments['customers'].sum())\n"
              "raise ValueError(f'no segment called {highlight_segment}')")

    raised = reported.materialize(*THROUGH_PROD)

    assert not raised.success
    executes = gate(raised, "executes")
    assert not executes.passed
    assert executes.description == "cell 6 (In [5]) raised ValueError: no segment called at_risk"
    assert executes.metadata["cell"].value == 6 and executes.metadata["error"].value == "ValueError"
    assert "raise ValueError" in executes.metadata["source"].value
    assert "no segment called at_risk" in executes.metadata["traceback"].value
    assert "(it stopped before recording it)" in gate(raised, "outputs").description
    materialized = {e.asset_key.to_user_string() for e in raised.get_asset_materialization_events()}
    assert materialized == {f"{REPORT}/build", f"{REPORT}/evaluate"}, "the blocking gates stopped the deploys"
    alone = reported.materialize(f"{REPORT}/staging")
    failure = alone.failure_data_for_node("segmentation_report__staging").error.message
    assert "did not pass its gates (executes, outputs)" in failure
    assert reported.latest(f"{REPORT}/evaluate")["version"] != before["version"]
    assert reported.latest(f"{REPORT}/prod")["version"] == before["version"]
    assert current_report("prod") == before and current_report("staging")["version"] == before["version"]
    executed = Path(executes.metadata["executed_notebook"].value)
    assert "no segment called at_risk" in executed.read_text(), "what ran, error included, is kept"
