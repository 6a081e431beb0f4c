"""The asset graph the factory builds, and how spec errors surface without breaking the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from platform_assets.code_location import build_definitions
from platform_assets.factory import CATALOG_CHECK, CATALOG_KEY
from tests.conftest import PROJECT_ROOT, Platform

HEAVY = ["dbt", "dagster_dbt", "duckdb", "kubernetes", "sklearn", "papermill", "boto3", "pandas", "fastapi", "uvicorn",
         "mlflow", "skops", "matplotlib", "httpx", "dagster_k8s", "dagster_aws", "dagster_postgres", "botocore",
         "nbconvert", "nbformat", "jupyter_client", "scipy", "prometheus_client", "playwright", "starlette"]


@pytest.fixture(autouse=True)
def teams_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo's teams registry plus `web-team`, which owns the storefront these tests add."""
    registry = yaml.safe_load((PROJECT_ROOT / "teams.yaml").read_text())
    registry["teams"]["web-team"] = {"description": "The shop front."}
    path = tmp_path / "teams.yaml"
    path.write_text(yaml.safe_dump(registry))
    monkeypatch.setenv("PLATFORM_TEAMS_FILE", str(path))
    return path


def add_spec(platform: Platform, folder: str, content: dict | str) -> Path:
    path = platform.catalog / folder / "deliverable.yaml"
    path.parent.mkdir()
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def frontend_spec(**overrides) -> dict:
    spec = {"name": "storefront", "kind": "service", "owner": "web-team", "description": "The shop front.",
            "depends_on": ["recommendations-api"], "compute": "cpu-large",
            "service": {"app": "storefront.app:app"}}
    spec.update(overrides)
    return spec


def test_stage_assets_are_chained_per_deliverable(platform: Platform) -> None:
    add_spec(platform, "storefront", frontend_spec())
    graph = build_definitions(platform.settings).resolve_asset_graph()
    key = dg.AssetKey.from_user_string
    assert graph.get(key("recommendations-api/evaluate")).parent_keys == {key("recommendations-api/build")}
    assert graph.get(key("recommendations-api/staging")).parent_keys == {key("recommendations-api/evaluate")}
    assert graph.get(key("recommendations-api/prod")).parent_keys == {key("recommendations-api/staging")}
    assert graph.get(key("storefront/build")).parent_keys == {key("recommendations-api/prod")}


def test_gates_and_health_are_blocking_checks_last_deploy_is_not(platform: Platform) -> None:
    defs = build_definitions(platform.settings)
    specs = {
        (spec.asset_key.to_user_string(), spec.name): spec
        for assets_def in defs.assets
        for spec in assets_def.check_specs
    }
    assert set(specs) == {
        ("recommendations-api/evaluate", "tests"),
        ("recommendations-api/evaluate", "api_compatibility"),
        ("recommendations-api/staging", "healthy"),
        ("recommendations-api/prod", "healthy"),
        ("recommendations-api/staging", "last_deploy"),
        ("recommendations-api/prod", "last_deploy"),
        ("platform/catalog", CATALOG_CHECK),
    }
    blocking = {check for check, spec in specs.items() if spec.blocking}
    assert blocking == set(specs) - {("platform/catalog", CATALOG_CHECK),
                                     ("recommendations-api/staging", "last_deploy"),
                                     ("recommendations-api/prod", "last_deploy")}


def test_assets_carry_owner_group_kinds_description_and_links(platform: Platform) -> None:
    add_spec(platform, "storefront", frontend_spec())
    specs = {s.key.to_user_string(): s for s in build_definitions(platform.settings).resolve_all_asset_specs()}
    build = specs["storefront/build"]
    assert build.owners == ["team:web-team"]
    assert build.group_name == "web_team"
    assert build.kinds == {"service", "fastapi"}
    assert "The shop front." in build.description
    assert build.metadata["spec"].value.endswith("storefront/deliverable.yaml")
    assert {"deliverable": "storefront", "stage": "build"}.items() <= build.tags.items()
    assert specs["storefront/prod"].description.startswith("storefront in prod (auto promotion): the version serving")


def test_compute_profile_reaches_the_op(platform: Platform) -> None:
    add_spec(platform, "storefront", frontend_spec())
    defs = build_definitions(platform.settings)
    build = defs.resolve_assets_def(dg.AssetKey.from_user_string("storefront/build"))
    default = defs.resolve_assets_def(dg.AssetKey.from_user_string("recommendations-api/build"))
    assert build.op.tags["platform/compute"] == "cpu-large"
    assert default.op.tags["platform/compute"] == "cpu-small"


def test_malformed_spec_leaves_the_others_loaded_and_fails_the_catalog_check(platform: Platform) -> None:
    broken = add_spec(platform, "storefront", frontend_spec(compute="gpu-9", depends_onn=["x"]))
    defs = build_definitions(platform.settings)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "recommendations-api/prod" in keys
    assert not any(k.startswith("storefront/") for k in keys)
    errors_at_load = defs.resolve_assets_def(CATALOG_KEY).specs_by_key[CATALOG_KEY].metadata["errors_at_load"]
    assert "storefront/deliverable.yaml" in errors_at_load.value

    result = platform.materialize(CATALOG_KEY.to_user_string())
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == CATALOG_CHECK and not evaluation.passed
    listing = evaluation.metadata["errors"].value
    assert str(broken) in listing
    assert "field 'depends_onn'" in listing and "field 'compute'" in listing


def test_untrusted_spec_files_leave_the_code_location_loaded(platform: Platform) -> None:
    """Files a team may commit by mistake or on purpose: each is one error, the rest is served."""
    add_spec(platform, "latin", "").write_bytes(b"name: caf\xe9\n")
    add_spec(platform, "lol", "a: &a [x, x]\nb: [*a, *a]\n")
    add_spec(platform, "big", "# padding\n" * 7000)
    add_spec(platform, "twin", {**yaml.safe_load((platform.catalog / "recommendations-api" / "deliverable.yaml")
                                                 .read_text()), "description": "A copy."})
    (platform.catalog / "folder" / "deliverable.yaml").mkdir(parents=True)
    (platform.catalog / "dangling").mkdir()
    (platform.catalog / "dangling" / "deliverable.yaml").symlink_to(platform.catalog / "nowhere.yaml")
    (platform.catalog / "pipe").mkdir()
    os.mkfifo(platform.catalog / "pipe" / "deliverable.yaml")
    add_spec(platform, "storefront", frontend_spec(depends_on=[]))

    defs = build_definitions(platform.settings)

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"storefront/prod", "platform/catalog"} <= keys
    assert not any(k.startswith("recommendations-api/") for k in keys), "a duplicated name is left out"
    errors_at_load = defs.resolve_assets_def(CATALOG_KEY).specs_by_key[CATALOG_KEY].metadata["errors_at_load"].value
    for folder in ("latin", "lol", "big", "twin", "folder", "dangling", "pipe", "recommendations-api"):
        assert errors_at_load.count(f"{platform.catalog / folder}/deliverable.yaml:") == 1, (folder, errors_at_load)


def test_a_broken_teams_registry_shows_on_the_catalog_asset(platform: Platform, teams_file: Path) -> None:
    teams_file.write_text(teams_file.read_text().replace("platform_team: platform", "platform_team: ops"))
    defs = build_definitions(platform.settings)
    assert dg.AssetKey.from_user_string("recommendations-api/prod") in defs.resolve_asset_graph().get_all_asset_keys()

    [evaluation] = platform.materialize(CATALOG_KEY.to_user_string()).get_asset_check_evaluations()

    assert not evaluation.passed
    assert f"- {teams_file}: (whole file): platform_team: 'ops' is not a team here" in evaluation.description


def test_deliver_validate_exits_1_and_names_file_and_field(platform: Platform) -> None:
    add_spec(platform, "storefront", frontend_spec(compute="gpu-9"))
    add_spec(platform, "broken", "kind: [oops\n")
    completed = subprocess.run([sys.executable, "-m", "platform_assets.cli", "validate"],
                               capture_output=True, text=True)
    assert completed.returncode == 1
    lines = completed.stdout.splitlines()
    assert any("storefront/deliverable.yaml: field 'compute': unknown compute profile 'gpu-9'" in line
               for line in lines)
    assert any("broken/deliverable.yaml: (whole file): not valid YAML" in line for line in lines)
    assert "1 deliverable(s) valid, 2 error(s) in 2 file(s)" in lines[-1]


def test_deliver_validate_passes_on_the_demo_catalog() -> None:
    completed = subprocess.run([sys.executable, "-m", "platform_assets.cli", "validate"],
                               capture_output=True, text=True, cwd=PROJECT_ROOT,
                               env={k: v for k, v in os.environ.items() if k != "PLATFORM_CATALOG_DIR"})
    assert completed.returncode == 0, completed.stdout
    assert "0 error(s)" in completed.stdout


def test_broken_platform_yaml_names_file_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "platform.yaml"
    text = (PROJECT_ROOT / "platform.yaml").read_text().replace("default_compute: cpu-small", "default_compute: tiny")
    config.write_text(text)
    monkeypatch.setenv("PLATFORM_CONFIG", str(config))
    completed = subprocess.run([sys.executable, "-m", "platform_assets.cli", "validate"],
                               capture_output=True, text=True)
    assert completed.returncode == 1
    assert f"{config}: field '(top level)': Value error, default_compute: 'tiny'" in completed.stderr


def test_loading_definitions_imports_no_heavy_library() -> None:
    """The demo catalog has every implemented kind, dbt models included: none may pull its library in."""
    probe = f"""
import json, sys
from platform_assets.catalog import load_catalog
from platform_assets.definitions import defs
from platform_assets.settings import catalog_dir, load_settings

keys = defs.resolve_asset_graph().get_all_asset_keys()
kinds = sorted({{d.kind for d in load_catalog(catalog_dir(), load_settings())}})
print(json.dumps([sorted(m for m in {HEAVY!r} if m in sys.modules), len(keys), kinds]))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                               cwd=PROJECT_ROOT, env=env)
    imported, asset_count, kinds = json.loads(completed.stdout.splitlines()[-1])
    assert imported == []
    assert kinds == ["dataset", "job", "model", "notebook", "service", "webapp"] and asset_count > 15, \
        "the probe loaded the whole demo catalog"


def test_dagster_cli_loads_the_code_location() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "Validation successful" in completed.stdout + completed.stderr


def test_execution_mode_picks_the_executor(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    defs = build_definitions(platform.settings)
    assert defs.resolve_implicit_global_asset_job_def().executor_def.name == "multiprocess"
    monkeypatch.setenv("PLATFORM_EXECUTION_MODE", "lambda")
    completed = subprocess.run([sys.executable, "-c", "import platform_assets.definitions"],
                               capture_output=True, text=True)
    assert "PLATFORM_EXECUTION_MODE: 'lambda' is not a mode; valid: local, kubernetes" in completed.stderr
