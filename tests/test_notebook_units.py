"""The notebook kind's parts on their own: spec errors, versions, a real kernel's failures, the report store."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook, new_output

from platform_assets.catalog import load_catalog
from platform_assets.expectations import Expectation as OutputExpectation
from platform_assets.handlers.base import BuildFailed, StageContext
from platform_assets.kinds.notebook.handler import NotebookHandler
from platform_assets.kinds.notebook.run import OUTPUTS_MIME, execute
from platform_assets.settings import load_settings
from resources.artifact_store import LocalArtifactStore
from resources.report_store import LocalReportStore
from tests.conftest import DEMO_CATALOG

REPORT = "segmentation-report"
NOTEBOOK = "segmentation_report.ipynb"


def spec(**changes: object) -> dict:
    raw = yaml.safe_load((DEMO_CATALOG / REPORT / "deliverable.yaml").read_text())
    raw.pop("depends_on")
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        target = raw
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return raw


def catalog_errors(tmp_path: Path, raw: dict) -> list[str]:
    folder = tmp_path / "catalog" / REPORT
    folder.mkdir(parents=True)
    (folder / "deliverable.yaml").write_text(yaml.safe_dump(raw))
    return [str(error) for error in load_catalog(tmp_path / "catalog", load_settings()).errors]


@pytest.mark.parametrize(("written", "expected"), [
    (">= 3", {"min": 3}), ("< 0.5", {"lt": 0.5}), ("== loyal", {"equals": "loyal"}), (6, {"equals": 6}),
    ({"min": 1000, "max": 5000}, {"min": 1000, "max": 5000}),
])
def test_expectations_are_written_as_expressions_or_mappings(written: object, expected: dict) -> None:
    parsed = OutputExpectation.model_validate(written)
    assert parsed.model_dump(exclude_none=True) == expected


def test_expectation_checks_name_the_value_and_the_bound() -> None:
    at_least_3 = OutputExpectation.model_validate(">= 3")
    assert at_least_3.problem("segments", 6) is None
    assert at_least_3.problem("segments", 2) == "segments is 2, expected >= 3"
    assert at_least_3.problem("segments", "six") == "segments is 'six', not a number to compare with >= 3"
    assert OutputExpectation.model_validate("== loyal").problem("largest", "new") == (
        "largest is 'new', expected == 'loyal'")


def test_malformed_gates_and_parameters_name_file_field_and_fix(tmp_path: Path) -> None:
    errors = catalog_errors(tmp_path, spec(**{
        "gates.outputs": {"segments": "=> 3", "customers": {"minimum": 1000}, "share": "> high"},
        "gates.runtime_max": "5 minutes",
        "notebook.parameters": {"input_files": {"x": {"t": "/tmp/t.parquet"}}, "top-n": 3},
    }))
    where = f"{tmp_path}/catalog/{REPORT}/deliverable.yaml"
    assert all(error.startswith(where) for error in errors), errors
    text = "\n".join(errors)
    assert ("field 'gates.outputs.segments': '=> 3' is not an expectation; write '<op> <value>' with <op> one of "
            ">=, >, <=, <, == (e.g. '>= 3'), or a mapping with min, max, gt, lt, equals (e.g. {min: 3})") in text
    assert "field 'gates.outputs.customers': unknown field 'minimum'; did you mean 'min'?" in text
    assert "field 'gates.outputs.share': '> high': > compares numbers, 'high' is not one" in text
    assert "field 'gates.runtime_max': '5 minutes' is not a duration; write seconds (300) or '90s', '5m'" in text
    assert ("field 'notebook.parameters': 'top-n' is not a Python variable name, so no cell can read it; "
            "'input_files' is set by the platform") in text
    assert len(errors) == 5


def test_unknown_notebook_field_gets_a_suggestion(tmp_path: Path) -> None:
    [error] = catalog_errors(tmp_path, spec(**{"notebook.parameter": {}}))
    assert "field 'notebook.parameter': unknown field; did you mean 'parameters'?" in error


@pytest.fixture
def stage(tmp_path: Path) -> StageContext:
    """The demo notebook's stage context as the build step has it, on a copy of its folder."""
    folder = Path(shutil.copytree(DEMO_CATALOG / REPORT, tmp_path / "catalog" / REPORT))
    (folder / "deliverable.yaml").write_text(yaml.safe_dump(spec()))
    [deliverable] = load_catalog(tmp_path / "catalog", load_settings())
    return StageContext(deliverable=deliverable, settings=load_settings(),
                        artifacts=LocalArtifactStore(root=str(tmp_path / "artifacts")),
                        log=logging.getLogger("test"), deployed=lambda env: None,
                        upstream_versions={"customer-segments": "aaaa00000001"})


def rewrite_spec(ctx: StageContext, **changes: object) -> StageContext:
    ctx.deliverable.path.write_text(yaml.safe_dump(spec(**changes)))
    [ctx.deliverable] = load_catalog(ctx.deliverable.folder.parent, ctx.settings)
    return ctx


def test_version_follows_code_parameters_and_input_not_outputs_or_gates(stage: StageContext) -> None:
    handler = NotebookHandler()
    first = handler.version(stage)
    notebook = stage.deliverable.folder / NOTEBOOK
    nb = nbformat.read(notebook, as_version=4)
    for count, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), start=1):
        cell.execution_count = count
        cell.outputs = [new_output("stream", name="stdout", text=f"ran {count}\n")]
    nbformat.write(nb, notebook)
    assert handler.version(stage) == first, "saving a notebook after running it is not a new version"
    assert handler.version(rewrite_spec(stage, **{"gates.runtime_max": 30})) == first

    changed_parameter = handler.version(rewrite_spec(stage, **{"notebook.parameters.title": "Other"}))
    assert changed_parameter != first
    stage.upstream_versions["customer-segments"] = "bbbb00000002"
    new_input = handler.version(stage)
    assert new_input not in (first, changed_parameter)
    nb.cells[-1].source += "\nax.grid(True)"
    nbformat.write(nb, notebook)
    assert handler.version(stage) not in (first, changed_parameter, new_input)


def test_notebook_problems_fail_the_build_naming_file_field_and_fix(stage: StageContext) -> None:
    handler = NotebookHandler()
    rewrite_spec(stage, **{"notebook.parameters.top_n": 5})
    with pytest.raises(BuildFailed, match=r"field 'notebook.parameters': top_n not assigned in the 'parameters' "
                                          r"cell of .*segmentation_report.ipynb .*give each a default there"):
        handler.version(stage)

    notebook = stage.deliverable.folder / NOTEBOOK
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("tags", None)
    nbformat.write(nb, notebook)
    with pytest.raises(BuildFailed, match=r"has no cell tagged 'parameters'; tag the cell that sets the defaults"):
        handler.version(stage)

    rewrite_spec(stage, **{"notebook.path": "report.ipynb"})
    with pytest.raises(BuildFailed, match=r"report.ipynb does not exist \(field 'notebook.path' in .*deliverable"):
        handler.version(stage)


def notebook_with(tmp_path: Path, *sources: str) -> Path:
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python"}})
    parameters = new_code_cell("limit = 1")
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [parameters, *map(new_code_cell, sources)]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def test_cell_over_its_timeout_is_a_failure_of_that_cell(tmp_path: Path) -> None:
    path = notebook_with(tmp_path, "import sys\nprint(sys.executable)", "import time\ntime.sleep(limit)", "x = 1")

    run = execute(path, tmp_path / "out" / "executed.ipynb", {"limit": 60}, cell_timeout_s=2)

    assert run.failure is not None and run.failure.cell == 3 and run.failure.error == "CellTimeoutError"
    assert "time.sleep(limit)" in run.failure.source
    assert run.runtime_s < 30


def test_kernel_is_the_platform_python_and_records_outputs(tmp_path: Path) -> None:
    import sys

    path = notebook_with(tmp_path, "import sys\nfrom IPython.display import display\n"
                         f"display({{'{OUTPUTS_MIME}': {{'python': sys.executable, 'limit': limit}}}}, raw=True)")

    run = execute(path, tmp_path / "out" / "executed.ipynb", {"limit": 7}, cell_timeout_s=60)

    assert run.failure is None and run.cells == 2
    assert run.outputs == {"python": sys.executable, "limit": 7}


def test_report_store_switches_current_and_keeps_every_version(tmp_path: Path) -> None:
    store = LocalReportStore(root=str(tmp_path / "reports"))
    for version in ("v1", "v2"):
        (tmp_path / f"{version}.html").write_text(f"<p>{version}</p>")
    assert store.current("prod", REPORT) is None

    store.publish("prod", REPORT, "v1", tmp_path / "v1.html")
    second = store.publish("prod", REPORT, "v2", tmp_path / "v2.html")

    assert second["version"] == "v2" and Path(second["path"]).read_text() == "<p>v2</p>"
    assert store.versions("prod", REPORT) == ["v1", "v2"]
    assert store.read("prod", REPORT, "v1") == b"<p>v1</p>", "the previous report stays for rollback"
    stable = Path(second["current_url"].removeprefix("file://"))
    assert stable.read_text() == "<p>v2</p>"
    rolled_back = store.publish("prod", REPORT, "v1", tmp_path / "v2.html")
    assert rolled_back["version"] == "v1" and stable.read_text() == "<p>v1</p>", "a stored version is never rewritten"
    assert store.current("staging", REPORT) is None
