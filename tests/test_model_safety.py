"""Governance of models: the trainer runs without credentials, only skops models with trusted types
are ever loaded, and each (model, environment) has its own token.

Real training in the sandbox, a real MLflow store, real model server and service processes (the
`models` fixture of conftest.py); no mocks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from platform_assets.catalog import load_catalog
from platform_assets.code_location import build_definitions
from platform_assets.delivery_actions import history
from platform_assets.kinds.model.safety import ALLOW_PICKLE_ENV, HOW_TO_LOG, UnsafeModel, load_version, model_problems
from platform_assets.model_token import master_token, model_token
from platform_assets.resources_config import platform_resources
from platform_assets.settings import PROJECT_ROOT
from platform_assets.status import collect_status
from tests.conftest import Platform
from tests.test_model_pipeline import (
    MODEL,
    SERVICE,
    THROUGH_PROD,
    example,
    notebook_run,
    register_from_a_notebook,
    registry,
    set_model_spec,
)

TREE = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
CREDENTIALS = ("DAGSTER_HOME", "PLATFORM_PG_PASSWORD", "PLATFORM_MODEL_TOKEN", "AWS_ACCESS_KEY_ID",
               "AWS_SECRET_ACCESS_KEY")
DEMO_TRAINER = (PROJECT_ROOT / "catalog" / MODEL / "train.py").read_text()


def write_trainer(platform: Platform, text: str) -> None:
    (platform.catalog / MODEL / "train.py").write_text(text)


def build_failure(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    return result.failure_data_for_node("churn_model__build").error.message


def tick_registrations(platform: Platform, cursor: str | None) -> tuple[list[dg.RunRequest], str | None]:
    """One tick of the registration sensor, as the daemon runs it."""
    defs = build_definitions(platform.settings)
    sensor = next(s for s in defs.sensors if s.name == "platform_model_registrations")
    context = dg.build_sensor_context(instance=platform.instance, cursor=cursor, definitions=defs,
                                      resources=platform_resources(platform.settings))
    result = sensor(context)
    return list(result.run_requests or []), result.cursor


def adopt_what_the_sensor_requests(platform: Platform, cursor: str | None) -> dg.ExecuteInProcessResult:
    [request], _ = tick_registrations(platform, cursor)
    assert request.run_key.startswith(f"registered:{MODEL}:")
    return platform.run_request(request)


def test_the_trainer_sees_no_platform_credential(models: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer raises if any credential reaches it; the platform's process holds them all."""
    for name in CREDENTIALS[1:]:
        monkeypatch.setenv(name, f"{name.lower()}-value-1234")
    assert all(name in os.environ for name in CREDENTIALS)
    write_trainer(models, DEMO_TRAINER.replace("def train(", "def _demo_train(") + f'''

import os


def train(features, label, params):
    found = [name for name in {CREDENTIALS!r} if name in os.environ]
    if found:
        raise RuntimeError(f"the trainer can read {{found}}")
    return _demo_train(features, label, params)
''')

    result = models.materialize(f"{MODEL}/build")

    assert result.success, build_failure(result)
    version = models.latest(f"{MODEL}/build")["version"]
    assert registry().run_of(MODEL, version).data.metrics["roc_auc"] > 0.7, "the platform scored what it trained"


def test_a_failing_trainer_names_the_field_and_shows_its_last_lines_redacted(
        models: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATFORM_PG_PASSWORD", "pg-password-4711")
    write_trainer(models, '''
def train(features, label, params):
    print("connecting with pg-password-4711")
    raise RuntimeError("the feature store is unreachable")
''')

    failure = build_failure(models.materialize(f"{MODEL}/build"))

    assert f"{models.catalog / MODEL / 'deliverable.yaml'}: field 'model.trainer': train.py:train failed" in failure
    assert "RuntimeError: the feature store is unreachable" in failure and "connecting with ***" in failure
    assert "pg-password-4711" not in failure
    assert registry().versions(MODEL) == []


class Unpickles:
    """A "model" whose unpickling opens (creates) `marker`: what a malicious pickle does."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def predict(self, rows: Any) -> Any:
        return rows

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (self.marker, "w")


def test_a_pickle_model_from_a_notebook_is_not_adopted_and_never_loaded(models: Platform, tmp_path: Path) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    from platform_assets.kinds.model.server import load

    marker = tmp_path / "unpickled"
    requests, cursor = tick_registrations(models, None)
    assert requests == [], "the first tick only takes a baseline"
    with notebook_run(models):  # requirements given: MLflow would otherwise load it to infer them
        info = mlflow.sklearn.log_model(Unpickles(marker), name="model", serialization_format="pickle",
                                        registered_model_name=MODEL, pip_requirements=["scikit-learn"])
    version = str(info.registered_model_version)
    assert not marker.exists(), "logging it did not unpickle it"

    failure = build_failure(adopt_what_the_sensor_requests(models, cursor))

    assert f"{MODEL} version {version} (registered outside the platform by run" in failure
    assert "is not adopted and was not loaded: it is serialized as pickle, not skops" in failure
    assert HOW_TO_LOG in failure and TREE in failure
    tags = registry().client().get_model_version(MODEL, version).tags
    assert tags["platform.build"].startswith(f"failed: {MODEL} could not be built: {MODEL} version {version} (")
    assert "is not adopted and was not loaded" in tags["platform.build"], "MLflow shows why it was refused"
    [row] = collect_status(models.instance, load_catalog(models.catalog, models.settings), models.settings, MODEL)
    assert row.build_failure.startswith(f"{version}: {MODEL} could not be built: {MODEL} version {version} (")
    entries = history(models.instance, load_catalog(models.catalog, models.settings), models.settings, MODEL)
    assert any(e.event == "build_failed" and e.version == version for e in entries), entries
    uri = f"models:/{MODEL}/{version}"
    with pytest.raises(UnsafeModel, match="serialized as pickle"):
        load_version(uri, models.settings.models.trusted_types)  # how evaluation loads
    registry().move_alias(MODEL, "staging", version)
    with pytest.raises(UnsafeModel, match="serialized as pickle"):
        load(MODEL, "staging", version)  # how the model server loads
    assert os.environ[ALLOW_PICKLE_ENV] == "false", "the platform switched MLflow's pickle loading off"
    with pytest.raises(MlflowException, match=ALLOW_PICKLE_ENV):
        mlflow.pyfunc.load_model(uri)
    assert not marker.exists(), "nothing unpickled it"


def test_a_notebook_model_trusting_types_outside_the_platform_list_is_refused(models: Platform) -> None:
    _, cursor = tick_registrations(models, None)
    version = register_from_a_notebook(models, {"max_iter": 50}, trusted_types=[TREE, "builtins.eval"], all_rows=True)

    failure = build_failure(adopt_what_the_sensor_requests(models, cursor))

    assert f"{MODEL} version {version}" in failure and "it trusts types the platform does not: builtins.eval" in failure
    assert HOW_TO_LOG in failure
    assert registry().alias_version(MODEL, "staging") is None


def test_a_trained_model_needing_an_untrusted_type_is_refused(models: Platform) -> None:
    write_trainer(models, DEMO_TRAINER.replace('("preprocess", preprocess), ', '("preprocess", preprocess), '
                                               '("passthrough", Passthrough()), ') + '''

from sklearn.base import BaseEstimator, TransformerMixin


class Passthrough(TransformerMixin, BaseEstimator):
    def fit(self, x, y=None):
        return self

    def transform(self, x):
        return x
''')

    failure = build_failure(models.materialize(f"{MODEL}/build"))

    assert "the model contains types outside the trusted list: train.Passthrough" in failure
    assert f"{models.settings.source}: field 'models.trusted_types'" in failure
    assert registry().versions(MODEL) == [], "refused before anything was logged"


def test_a_spec_may_only_name_types_the_platform_trusts(models: Platform) -> None:
    set_model_spec(models, trusted_types=[TREE, "builtins.eval"])

    failure = build_failure(models.materialize(f"{MODEL}/build"))

    assert "field 'model.trusted_types': builtins.eval is not trusted by the platform" in failure
    assert f"{models.settings.source}: field 'models.trusted_types' lists {TREE}" in failure


@pytest.mark.parametrize(("flavors", "problem"), [
    ({"python_function": {"loader_module": "mlflow.pyfunc.model", "python_model": "python_model.pkl"}},
     "not a scikit-learn model"),
    ({"sklearn": {"serialization_format": "cloudpickle", "pickled_model": "model.pkl"},
      "python_function": {"loader_module": "mlflow.sklearn", "model_path": "model.pkl"}}, "serialized as cloudpickle"),
    ({"sklearn": {"serialization_format": "skops", "pickled_model": "model.skops"}, "xgboost": {}}, "xgboost"),
    ({"sklearn": {"serialization_format": "skops", "pickled_model": "model.skops", "code": "code"},
      "python_function": {"loader_module": "mlflow.sklearn", "model_path": "model.skops", "code": "code"}},
     "code_paths"),
    ({"sklearn": {"serialization_format": "skops", "pickled_model": "../model.skops"},
      "python_function": {"loader_module": "mlflow.sklearn", "model_path": "../model.skops"}}, "not one .skops file"),
])
def test_only_plain_skops_sklearn_models_pass_the_mlmodel_check(flavors: dict, problem: str) -> None:
    assert problem in "; ".join(model_problems(flavors, [TREE]))
    safe = {"sklearn": {"serialization_format": "skops", "pickled_model": "model.skops", "skops_trusted_types": [TREE]},
            "python_function": {"loader_module": "mlflow.sklearn", "model_path": "model.skops",
                                "predict_fn": "predict_proba"}}
    assert model_problems(safe, [TREE]) == []


def test_each_model_server_takes_only_its_own_token_and_a_service_gets_only_its_models(models: Platform) -> None:
    assert models.materialize(*THROUGH_PROD).success
    assert models.materialize(f"{SERVICE}/build", f"{SERVICE}/evaluate", f"{SERVICE}/staging").success
    body = example(models, models.latest(f"{MODEL}/prod")["version"])
    tokens = {env: model_token(models.settings, MODEL, env) for env in ("staging", "prod")}
    master = master_token(models.settings)
    assert len({*tokens.values(), master}) == 3

    for env in tokens:
        predict = models.current(MODEL, env)["url"] + "/predict"
        answers = {name: httpx.post(predict, json=body, headers={"Authorization": f"Bearer {token}"}).status_code
                   for name, token in {**tokens, "master": master}.items()}
        assert answers == {"staging": 401, "prod": 401, "master": 401, env: 200}, env
    service = models.current(SERVICE, "staging")
    environ = dict(line.split("=", 1) for line in Path(f"/proc/{service['pid']}/environ").read_text().split("\0")
                   if "=" in line)
    assert environ["CHURN_MODEL_TOKEN"] == tokens["staging"]
    assert not {tokens["prod"], master} & set(environ.values()), "the service holds no other token"
