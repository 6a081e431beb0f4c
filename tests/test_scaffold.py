"""`deliver new KIND NAME`: each built-in kind's template validates and reaches prod unchanged.

The delivery test runs on a copy of an instance where customer-features is published (the
templates of the model, dataset and notebook read it), with the real stages: the service's tests
and wheel, the model's training and MLflow registration, dbt, papermill, the job's dry run, npm and Chromium.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from platform_assets.cli import main
from platform_assets.kinds.registry import HANDLERS
from platform_assets.settings import PROJECT_ROOT
from tests.conftest import Platform

STAGES = ("build", "evaluate", "staging", "prod")
NEW = {"service": ("hello-api", "recs-team"), "model": ("churn-baseline", "ml-team"),
       "dataset": ("churn-summary", "analytics"), "notebook": ("churn-brief", "analytics"),
       "job": ("churn-counts", "analytics"), "webapp": ("churn-page", "recs-team")}


def test_every_built_in_kind_has_a_short_template() -> None:
    for kind in NEW:
        spec = HANDLERS[kind].template / "deliverable.yaml"  # type: ignore[operator]
        assert len(spec.read_text().splitlines()) <= 20, f"{spec} is longer than 20 lines"


def test_refusals_name_the_cause_and_write_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PLATFORM_CATALOG_DIR", str(tmp_path))
    (tmp_path / "taken").mkdir()
    cases = {("gadget", "x"): "unknown kind 'gadget'; kinds: dataset, job, model, notebook, service, webapp",
             ("service", "Not_A_Name"): "'Not_A_Name' is not a valid deliverable name",
             ("service", "taken"): "exists already",
             ("service", "y", "--owner", "nobody"): "'nobody' is not a team in"}
    for argv, message in cases.items():
        assert main(["new", *argv]) == 1
        assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_a_scaffolded_service_names_itself_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATFORM_CATALOG_DIR", str(tmp_path))
    assert main(["new", "service", "hello-api", "--owner", "recs-team"]) == 0

    folder = tmp_path / "hello-api"
    spec = yaml.safe_load((folder / "deliverable.yaml").read_text())
    assert (spec["name"], spec["owner"], spec["service"]["app"]) == ("hello-api", "recs-team", "hello_api.app:app")
    assert (folder / "src" / "hello_api" / "app.py").exists()
    assert not [p for p in folder.rglob("*") if "{{" in p.name or "__package__" in str(p)]
    assert not [p for p in folder.rglob("*") if p.is_file() and "{{name}}" in p.read_text()]


def test_each_kind_scaffolded_validates_and_reaches_prod_unchanged(models: Platform) -> None:
    platform = models
    for kind, (name, owner) in NEW.items():
        assert main(["new", kind, name, "--owner", owner]) == 0, kind
    validated = subprocess.run([sys.executable, "-m", "platform_assets.cli", "validate"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True)
    assert validated.returncode == 0, validated.stdout + validated.stderr

    for kind, (name, _) in NEW.items():
        result = platform.materialize(*(f"{name}/{stage}" for stage in STAGES))
        failures = [e.step_failure_data.error.message if e.is_step_failure else e.message  # type: ignore[union-attr]
                    for e in result.all_events if e.is_failure]
        assert result.success, (kind, failures)
        assert platform.latest(f"{name}/evaluate")["gates_passed"] is True, kind
        prod = platform.latest(f"{name}/prod")
        assert prod["healthy"] is True and prod["version"] == platform.latest(f"{name}/build")["version"], kind
