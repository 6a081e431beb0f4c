"""Models through the pipeline: real training, a real MLflow store (SQLite + local artifacts) and real
model server processes.

customer-features is delivered through prod once per module; every test starts from a copy of that
DAGSTER_HOME (its event log, warehouse file and artifacts), so it gets a fresh MLflow store of its
own and may change the model's spec the way an ML engineer would (fixtures `features_home` and
`models` in conftest.py, shared with test_model_safety.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import yaml

from platform_assets.catalog import load_catalog
from platform_assets.code_location import build_definitions
from platform_assets.delivery_actions import history
from platform_assets.model_token import master_token, model_token
from platform_assets.settings import PROJECT_ROOT, load_settings
from resources.mlflow_registry import MlflowRegistry
from tests.conftest import Platform, cli, copy_deliverable, materialize_with_cli, status_json

MODEL = "churn-model"
DATASET = "customer-features"
SERVICE = "recommendations-api"
THROUGH_PROD = [f"{MODEL}/build", f"{MODEL}/evaluate", f"{MODEL}/staging", f"{MODEL}/prod"]
WEAK = {"max_iter": 1, "max_depth": 1, "learning_rate": 0.01}
ENVS = ("staging", "prod")


def registry() -> MlflowRegistry:
    return MlflowRegistry()


def set_model_spec(platform: Platform, **changes: object) -> None:
    path = platform.catalog / MODEL / "deliverable.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["model"].update(changes)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


def example(platform: Platform, version: str) -> dict:
    record = platform.latest(f"{MODEL}/build")
    assert record["version"] == version
    build = (platform.home / "platform" / "artifacts" / MODEL / version / "build.json").read_text()
    return {"dataframe_records": yaml.safe_load(build)["input_example"]}


def health(platform: Platform, env: str) -> dict:
    return httpx.get(platform.current(MODEL, env)["health_url"], timeout=10).json()


def test_cli_through_prod_registers_the_prod_alias_and_serves_with_a_token(models: Platform) -> None:
    materialize_with_cli(THROUGH_PROD)

    version = models.latest(f"{MODEL}/build")["version"]
    assert registry().alias_version(MODEL, "prod") == registry().alias_version(MODEL, "staging") == version
    prod = models.current(MODEL, "prod")
    body = example(models, version)
    token = model_token(models.settings, MODEL, "prod")
    answer = httpx.post(prod["url"] + "/predict", json=body, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == version
    assert all(0 <= row[1] <= 1 for row in answer.json()["predictions"])
    assert httpx.post(prod["url"] + "/predict", json=body).status_code == 401
    for other in ("wrong", model_token(models.settings, MODEL, "staging"), master_token(models.settings)):
        assert httpx.post(prod["url"] + "/predict", json=body,
                          headers={"Authorization": f"Bearer {other}"}).status_code == 401
    assert health(models, "prod")["model_uri"] == "models:/churn-model@prod"
    row = next(r for r in status_json() if r["name"] == MODEL)
    assert row["versions"] == {"staging": version, "prod": version} and row["endpoint"] == prod["url"]


def test_mlflow_run_records_the_dataset_version_and_the_ui_shows_metrics_and_plot(models: Platform) -> None:
    result = models.materialize(f"{MODEL}/build", f"{MODEL}/evaluate")
    assert result.success

    dataset_version = models.latest(f"{DATASET}/prod")["version"]
    build = models.latest(f"{MODEL}/build")
    client = registry().client()
    run = client.get_run(build["mlflow_run_id"])
    assert run.data.tags[f"platform.dataset.{DATASET}"] == dataset_version
    assert run.data.tags["dagster_run_id"] == result.run_id
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == [
        f"training_churn_model.customer_features@{dataset_version}"], "the training view it trained on"
    assert run.data.params["max_iter"] == "200" and run.data.metrics["roc_auc"] > 0.7
    assert f"audit__customer_features__{dataset_version}" in build["trained_on"]
    version = client.get_model_version(MODEL, build["version"])
    assert version.tags[f"platform.dataset.{DATASET}"] == dataset_version
    assert [a.path for a in client.list_artifacts(run.info.run_id, "evaluation")] == ["evaluation/roc.png"]
    evaluated = models.latest(f"{MODEL}/evaluate")
    assert evaluated["roc_curve"].startswith("![ROC curve](data:image/png;base64,")
    assert "| roc_auc |" in evaluated["metrics"]
    assert {c.check_name: c.passed for c in result.get_asset_check_evaluations()} == {
        "metrics": True, "champion": True, "signature": True}


def test_weaker_challenger_fails_the_champion_gate_and_the_prod_alias_stays(models: Platform) -> None:
    assert models.materialize(*THROUGH_PROD).success
    champion = models.latest(f"{MODEL}/prod")["version"]

    set_model_spec(models, params=WEAK)
    result = models.materialize(f"{MODEL}/build", f"{MODEL}/evaluate", f"{MODEL}/staging")

    challenger = models.latest(f"{MODEL}/build")["version"]
    assert challenger != champion
    gate = check(result, "champion")
    assert not gate.passed
    assert f"champion v{champion} in prod" in gate.description and "worse than the tolerance" in gate.description
    assert check(result, "metrics").passed, "the weak model still clears the absolute threshold"
    assert not result.success, "the staging deploy is refused"
    assert registry().alias_version(MODEL, "prod") == registry().alias_version(MODEL, "staging") == champion
    assert health(models, "prod")["version"] == health(models, "staging")["version"] == champion
    tags = registry().client().get_model_version(MODEL, challenger).tags
    assert tags["platform.gate.champion"] == f"failed: {gate.description}"
    assert tags["platform.gate.metrics"].startswith("passed: ")
    assert tags["platform.evaluate_run_id"] == result.run_id


def test_a_version_that_fails_to_load_moves_the_alias_back(models: Platform) -> None:
    assert models.materialize(f"{MODEL}/build", f"{MODEL}/evaluate", f"{MODEL}/staging").success
    serving = models.latest(f"{MODEL}/staging")["version"]
    set_model_spec(models, params={"max_iter": 150, "learning_rate": 0.05, "max_depth": 3})
    assert models.materialize(f"{MODEL}/build", f"{MODEL}/evaluate").success
    broken = models.latest(f"{MODEL}/build")["version"]
    client = registry().client()
    model_dir = Path(client.get_model_version_download_uri(MODEL, broken).removeprefix("file://"))
    (model_dir / "model.skops").write_bytes(b"not a model")

    result = models.materialize(f"{MODEL}/staging")

    assert not result.success
    assert registry().alias_version(MODEL, "staging") == serving
    assert health(models, "staging")["version"] == serving
    failure = result.failure_data_for_node("churn_model__staging").error.message
    assert f"alias 'staging' moved back to version {serving}" in failure
    kept = models.latest(f"{MODEL}/staging")
    assert (kept["version"], kept["kept"], kept["healthy"], kept["attempted_version"]) == (serving, True, True, broken)


def test_service_calls_the_model_of_its_environment_and_lineage_runs_through(models: Platform) -> None:
    assert models.materialize(*THROUGH_PROD).success
    version = models.latest(f"{MODEL}/prod")["version"]

    result = models.materialize(f"{SERVICE}/build", f"{SERVICE}/evaluate", f"{SERVICE}/staging")

    assert result.success
    assert models.latest(f"{SERVICE}/build")["tests_passed"] == 8, "the contract test ran against staging"
    service = models.current(SERVICE, "staging")
    profile = {"customer_id": "c-1", "features": example(models, version)["dataframe_records"][0]}
    answer = httpx.post(service["url"] + "/churn-risk", json=profile, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == version
    graph = build_definitions(models.settings).resolve_asset_graph()
    key = dg.AssetKey.from_user_string
    assert key(f"{DATASET}/prod") in graph.get(key(f"{MODEL}/build")).parent_keys
    assert key(f"{MODEL}/prod") in graph.get(key(f"{SERVICE}/build")).parent_keys


def test_malformed_threshold_names_the_file_and_field(tmp_path: Path) -> None:
    copy_deliverable(MODEL, tmp_path)
    path = tmp_path / MODEL / "deliverable.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["gates"]["metrics"]["thresholds"]["roc_auc"] = "about 0.7"
    path.write_text(yaml.safe_dump(spec))

    catalog = load_catalog(tmp_path, load_settings())

    [error] = [e for e in catalog.errors if e.file == path]
    assert "gates.metrics.thresholds" in str(error) and "'about 0.7'" in str(error)


def test_model_imports_nothing_heavy_at_load() -> None:
    """mlflow and scikit-learn are imported inside the stage functions only."""
    import subprocess
    import sys

    code = ("import sys, platform_assets.kinds.model.handler, platform_assets.model_token, "
            "platform_assets.kinds.model.runner; "
            "print(sorted(m for m in ('mlflow', 'sklearn', 'skops', 'pandas', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True)
    assert out.stdout.strip() == "[]"


def notebook_run(platform: Platform) -> Any:
    """An MLflow run of an ML engineer's notebook on the platform's store (artifacts in the test folder)."""
    import mlflow

    registry().activate()
    if mlflow.get_experiment_by_name("notebooks/churn") is None:
        mlflow.create_experiment("notebooks/churn", artifact_location=(platform.home / "notebook-runs").as_uri())
    mlflow.set_experiment("notebooks/churn")
    return mlflow.start_run()


def register_from_a_notebook(platform: Platform, params: dict, trusted_types: list[str] | None = None,
                             all_rows: bool = False) -> str:
    """What an ML engineer does outside the platform: read the model's training view (or, wrongly,
    every published row), train, log that data, register (in skops format, trusting the spec's
    types unless told otherwise)."""
    import importlib.util

    import duckdb
    import mlflow
    from mlflow.models import infer_signature

    from platform_assets.kinds.model.training import features_and_label, normalise
    from platform_assets.kinds.model.training_view import read_training_view

    spec = yaml.safe_load((platform.catalog / MODEL / "deliverable.yaml").read_text())["model"]
    if all_rows:
        with duckdb.connect(str(platform.home / "platform" / "warehouse.duckdb"), read_only=True) as db:
            frame = normalise(db.sql("select * from prod_analytics.customer_features").df())
    else:
        frame = read_training_view(MODEL)
    x_train, y_train = features_and_label(frame, spec["label"], spec["exclude"])
    loader = importlib.util.spec_from_file_location("notebook_train", platform.catalog / MODEL / "train.py")
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    estimator = module.train(x_train, y_train, params)
    with notebook_run(platform):
        mlflow.log_input(mlflow.data.from_pandas(frame, name="notebook-train"), context="training")
        info = mlflow.sklearn.log_model(
            estimator, name="model", signature=infer_signature(x_train, estimator.predict_proba(x_train)),
            pyfunc_predict_fn="predict_proba", registered_model_name=MODEL, serialization_format="skops",
            skops_trusted_types=spec["trusted_types"] if trusted_types is None else trusted_types)
    return str(info.registered_model_version)


def test_a_version_registered_outside_is_evaluated_and_a_better_one_deployed(models: Platform) -> None:
    assert models.materialize(*THROUGH_PROD).success
    champion = models.latest(f"{MODEL}/prod")["version"]
    cursors: dict = {}
    launched: dict = {}
    assert models.automate(cursors, launched) == [], "the first ticks only take a baseline"

    better = register_from_a_notebook(models, {"max_iter": 300, "learning_rate": 0.05, "max_depth": 3})
    started = models.automate(cursors, launched)

    service = models.latest(f"{SERVICE}/build")["version"] if started[3:] else None
    assert started == [f"registered:{MODEL}:{better}", *(f"promote:{MODEL}:{better}:{env}" for env in ENVS),
                       f"upstream:{SERVICE}:{MODEL}:{better}",
                       *(f"promote:{SERVICE}:{service}:{env}" for env in ENVS)], started
    assert all(launched[key] for key in started), "the promoted model re-delivered the service, through prod"
    assert models.latest(f"{MODEL}/build")["version"] == better
    assert registry().alias_version(MODEL, "staging") == registry().alias_version(MODEL, "prod") == better
    assert health(models, "prod")["version"] == better != champion
    build = models.latest(f"{MODEL}/build")
    assert build["adopted"].startswith("registered outside the platform by MLflow run ") and "trained_on" not in build
    assert build["logged_training_data"].startswith("notebook-train (digest "), "the lineage its own run logged"
    client = registry().client()
    adopting = models.instance.get_latest_materialization_event(dg.AssetKey([MODEL, "build"])).run_id
    assert client.get_run(client.get_model_version(MODEL, better).run_id).data.tags["dagster_run_id"] == adopting
    assert client.get_model_version(MODEL, better).tags["platform.deployed.prod"].startswith("serving since ")
    assert client.get_model_version(MODEL, champion).tags["platform.deployed.prod"].startswith(
        f"replaced by version {better} at ")

    worse = register_from_a_notebook(models, WEAK)
    started = models.automate(cursors, launched)

    assert started == [f"registered:{MODEL}:{worse}"] and launched[started[0]] is False
    assert models.latest(f"{MODEL}/evaluate")["failed_gates"] == ["champion"]
    assert registry().alias_version(MODEL, "staging") == registry().alias_version(MODEL, "prod") == better

    leaky = register_from_a_notebook(models, {"max_iter": 300, "learning_rate": 0.05, "max_depth": 3},
                                     all_rows=True)
    started = models.automate(cursors, launched)

    assert started == [f"registered:{MODEL}:{leaky}"] and launched[started[0]] is False
    evaluated = models.latest(f"{MODEL}/evaluate")
    assert evaluated["failed_gates"] == ["champion"]
    reason = registry().client().get_model_version(MODEL, leaky).tags["platform.gate.champion"]
    assert reason.startswith("failed: cannot compare fairly: trained on holdout rows (its run logged notebook-train")
    assert "training_churn_model.customer_features" in reason, "it names the view to train on"
    entries = history(models.instance, load_catalog(models.catalog, models.settings), models.settings, MODEL)
    assert any(e.event == "evaluate" and e.version == leaky and "trained on holdout rows" in e.detail
               for e in entries), entries
    assert registry().alias_version(MODEL, "prod") == better


def test_the_documented_hand_in_recipe_reaches_prod_through_the_gates(models: Platform, tmp_path: Path) -> None:
    """docs/ml-engineer.md's recipe, run as the script it is, against the instance's MLflow store."""
    import re
    import subprocess
    import sys

    assert models.materialize(*THROUGH_PROD).success, "the champion, and the training view its build published"
    guide = (PROJECT_ROOT / "docs" / "ml-engineer.md").read_text().split("## Handing in a model", 1)[1]
    script = tmp_path / "handin.py"
    script.write_text(re.search(r"```python\n(.*?)```", guide, re.DOTALL).group(1))

    completed = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                               timeout=600)

    assert completed.returncode == 0, completed.stderr[-3000:]
    version = re.search(r"registered churn-model version (\d+)", completed.stdout).group(1)
    adopted = cli("adopt", MODEL, "--version", version)

    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    assert f"{MODEL}/prod  ok" in adopted.stdout, adopted.stdout
    assert models.latest(f"{MODEL}/build")["adopted"].startswith("registered outside the platform")
    assert models.latest(f"{MODEL}/evaluate")["gates_passed"] is True
    assert registry().alias_version(MODEL, "prod") == version
    assert health(models, "prod")["version"] == version
    assert not list(tmp_path.glob("mlruns")), "nothing was logged outside the platform's store"


def test_republishing_the_dataset_retrains_the_model_against_the_champion(models: Platform) -> None:
    assert models.materialize(*THROUGH_PROD).success
    champion = models.latest(f"{MODEL}/prod")["version"]
    old_data = models.latest(f"{DATASET}/prod")["version"]
    cursors: dict = {}
    launched: dict = {}
    models.automate(cursors, launched)

    sql = models.home.parent / "dbt_project" / "models" / "marts" / "customer_features.sql"
    sql.write_text(sql.read_text() + "\n-- republished: reviewed thresholds\n")
    assert models.materialize(*(f"{DATASET}/{stage}" for stage in ("build", "evaluate", "staging", "prod"))).success
    new_data = models.latest(f"{DATASET}/prod")["version"]
    started = models.automate(cursors, launched)

    assert new_data != old_data
    retrain = f"upstream:{MODEL}:{DATASET}:{new_data}"
    assert started[0] == retrain and launched[retrain], started
    build = models.latest(f"{MODEL}/build")
    assert build["upstream_versions"] == {DATASET: new_data} and build["version"] != champion
    evaluate = models.instance.get_latest_materialization_event(dg.AssetKey.from_user_string(f"{MODEL}/evaluate"))
    assert models.instance.get_run_by_id(evaluate.run_id).tags["platform/trigger"] == "upstream-published"
    assert f"| champion v{champion} |" in models.latest(f"{MODEL}/evaluate")["metrics"], "compared with prod"
    run = registry().client().get_run(registry().client().get_model_version(MODEL, build["version"]).run_id)
    assert run.data.tags[f"platform.dataset.{DATASET}"] == new_data


def served_population(platform: Platform) -> Any:
    """The features of the published table, as callers would send them (JSON-ready records)."""
    import duckdb

    from platform_assets.kinds.model.training import normalise

    spec = yaml.safe_load((platform.catalog / MODEL / "deliverable.yaml").read_text())["model"]
    with duckdb.connect(str(platform.home / "platform" / "warehouse.duckdb"), read_only=True) as db:
        frame = normalise(db.sql("select * from prod_analytics.customer_features").df())
    return frame.drop(columns=[spec["label"], *spec["exclude"]])


def serve(platform: Platform, env: str, frame: Any) -> None:
    url, token = platform.current(MODEL, env)["url"], model_token(platform.settings, MODEL, env)
    for start in range(0, len(frame), 100):
        body = {"dataframe_records": json.loads(frame.iloc[start:start + 100].to_json(orient="records"))}
        answer = httpx.post(url + "/predict", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert answer.status_code == 200, answer.text


def run_drift_check(platform: Platform, env: str) -> dg.AssetCheckEvaluation:
    """What the `platform_model_drift` schedule runs, for one model and environment."""
    from platform_assets.factory import build_assets
    from platform_assets.kinds.model.drift_check import DRIFT_CHECK, drift_checks
    from platform_assets.records import env_key
    from platform_assets.resources_config import platform_resources

    catalog = load_catalog(platform.catalog, platform.settings)
    key = dg.AssetCheckKey(env_key(MODEL, env), DRIFT_CHECK)
    result = dg.materialize([*build_assets(platform.settings, catalog), drift_checks(catalog, platform.settings)],
                            selection=dg.AssetSelection.checks(key), resources=platform_resources(platform.settings),
                            instance=platform.instance, raise_on_error=False)
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_drifted_inputs_fail_the_drift_check_and_on_drift_retrain_requests_one_rebuild(models: Platform) -> None:
    """The model server samples what it serves: the published population passes `drift`, the same
    customers with inflated activity and one plan fail it feature by feature, and the drift trigger
    asks for exactly one rebuild of that version. An SLO with a smoke /predict guards the deploy."""
    from sensors.triggers import drift_tick

    population = served_population(models).sample(400, random_state=1)
    smoke = {"method": "POST", "path": "/predict",
             "body": {"dataframe_records": json.loads(population.head(2).to_json(orient="records"))}}
    set_model_spec(models, drift={"min_rows": 200, "sample_rows": 400}, on_drift="retrain")
    path = models.catalog / MODEL / "deliverable.yaml"
    path.write_text(path.read_text() + yaml.safe_dump({"slo": {"error_ratio_max": 0.01, "window_s": 1,
                                                               "smoke": [smoke]}}))
    assert models.materialize(f"{MODEL}/build", f"{MODEL}/evaluate", f"{MODEL}/staging").success
    version = models.latest(f"{MODEL}/staging")["version"]
    slo = models.latest(f"{MODEL}/staging")["slo"]
    assert slo["requests"] > 0 and slo["error_ratio"] == 0 and slo["breaches"] == [], slo
    sample = httpx.get(models.current(MODEL, "staging")["url"] + "/-/sample", timeout=10,
                       headers={"Authorization": f"Bearer {model_token(models.settings, MODEL, 'staging')}"})
    assert sample.status_code == 401, "the callers' token does not open the sample of other callers' inputs"

    serve(models, "staging", population)
    unshifted = run_drift_check(models, "staging")
    numeric = [c for c in population.columns if population[c].dtype == "float64"]
    shifted = population.assign(**{c: population[c] * 3 + 5 for c in numeric}, plan=population["plan"].iloc[0])
    serve(models, "staging", shifted)
    drifted = run_drift_check(models, "staging")
    requests, cursor = drift_tick(models.instance, [MODEL], models.settings, None)
    again, _ = drift_tick(models.instance, [MODEL], models.settings, cursor)

    assert unshifted.passed, unshifted.description
    assert unshifted.metadata["drifted_features"].value == [] and unshifted.metadata["sampled_rows"].value == 400
    assert not drifted.passed and drifted.metadata["version"].value == version
    figures = drifted.metadata["figures"].value
    assert set(figures) == set(population.columns)
    assert set(drifted.metadata["drifted_features"].value) >= {*numeric[:3], "plan"}
    assert figures["plan"]["test"] == "chi2" and figures[numeric[0]]["test"] == "ks"
    assert figures[numeric[0]]["psi"] > 0.2 and figures[numeric[0]]["p_value"] < 0.01
    assert "| feature | test |" in drifted.metadata["features"].value
    assert drifted.metadata["plot"].value.startswith("![holdout vs served](data:image/png;base64,")
    [request] = requests
    assert again == [], "one rebuild per drifted version"
    assert request.run_key == f"drift:{MODEL}:{version}" and request.tags["platform/trigger"] == "drift"
    assert {k.to_user_string() for k in request.asset_selection} == {f"{MODEL}/build", f"{MODEL}/evaluate"}, \
        "a rebuild: the promotion sensor deploys it once its gates passed"
    rebuilt = models.run_request(request)
    assert rebuilt.success and {c.check_name for c in rebuilt.get_asset_check_evaluations()} >= {
        "metrics", "champion", "signature"}, "the rebuild goes through the gates"
