"""`/predict` speaks MLflow's scoring protocol: the model's own `serving_input_example.json`, every
input format `mlflow models serve` takes, integers for float columns; 401 without the token.

A real MLflow store, real training and a real model server process (the `models` fixture)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest

from platform_assets.model_token import model_token
from tests.conftest import Platform
from tests.test_model_pipeline import MODEL, example, registry


def served_example(version: str) -> str:
    """The `serving_input_example.json` MLflow wrote when the version was logged, as it wrote it
    (a missing value is MLflow's `NaN`, which a strict JSON encoder would refuse to send)."""
    uri = registry().client().get_model_version_download_uri(MODEL, version)
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(f"{uri}/serving_input_example.json", dst_path=tmp)
        return Path(path).read_text()


def test_predict_takes_mlflows_scoring_protocol_and_its_own_serving_example(models: Platform) -> None:
    assert models.materialize(f"{MODEL}/build", f"{MODEL}/evaluate", f"{MODEL}/staging").success
    version = models.latest(f"{MODEL}/build")["version"]
    predict = models.current(MODEL, "staging")["url"] + "/predict"
    headers = {"Authorization": f"Bearer {model_token(models.settings, MODEL, 'staging')}"}
    records = example(models, version)["dataframe_records"]
    columns = list(records[0])
    integers = [{key: int(value) if isinstance(value, float) else value for key, value in row.items()}
                for row in records]
    assert integers != records, "the example has float columns to send integers for"
    bodies: dict[str, Any] = {
        "dataframe_records": {"dataframe_records": records},
        "dataframe_split": {"dataframe_split": {"columns": columns,
                                                "data": [[row[c] for c in columns] for row in records]}},
        "instances": {"instances": records},
        "inputs": {"inputs": {c: [row[c] for row in records] for c in columns}},
        "integers for float columns": {"dataframe_records": integers},
    }
    answers = {name: httpx.post(predict, json=body, headers=headers, timeout=30) for name, body in bodies.items()}
    answers["serving_input_example.json"] = httpx.post(
        predict, content=served_example(version), headers={**headers, "content-type": "application/json"}, timeout=30)
    bodies["serving_input_example.json"] = None

    assert {name: answer.status_code for name, answer in answers.items()} == dict.fromkeys(bodies, 200), {
        name: answer.text for name, answer in answers.items() if answer.status_code != 200}
    for answer in answers.values():
        assert answer.json()["version"] == version
        assert len(answer.json()["predictions"]) == len(records)
    assert httpx.post(predict, json=bodies["dataframe_split"], timeout=30).status_code == 401
    assert httpx.post(predict, json={"rows": records}, headers=headers, timeout=30).status_code == 422


def logged(estimator: object, x: Any, tmp_path: Path, **kwargs: object) -> str:
    """`estimator` logged the standard way (skops, MLflow's default pyfunc `predict`) to a real store."""
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("hand-in")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(estimator, name="model", serialization_format="skops",
                                        input_example=x.head(3), **kwargs)
    return info.model_uri


@pytest.mark.e2e  # a real MLflow store and skops round trips
def test_a_classifier_logged_with_the_default_predict_is_scored_on_probabilities(tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.svm import SVC

    from platform_assets.kinds.model.build import score_model
    from platform_assets.kinds.model.safety import load_version

    rng = np.random.default_rng(3)
    x = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
    y = (x["a"] + rng.normal(scale=1.0, size=400) > 0).astype(int)
    holdout = x.assign(churned=y)
    estimator = LogisticRegression().fit(x, y)
    try:
        model = load_version(logged(estimator, x, tmp_path), trusted=[])
        assert model.metadata.flavors["python_function"].get("predict_fn", "predict") == "predict"

        scored = score_model(model, "1", holdout, "churned")

        probability_auc = roc_auc_score(y, estimator.predict_proba(x)[:, 1])
        assert scored["metrics"]["roc_auc"] == pytest.approx(probability_auc)
        assert scored["metrics"]["roc_auc"] > roc_auc_score(y, estimator.predict(x)) + 0.01, "not scored on labels"

        labels_only = load_version(logged(SVC().fit(x, y), x, tmp_path), trusted=[])
        refused = score_model(labels_only, "2", holdout, "churned")
        assert refused["error"].startswith("ValueError: SVC has no predict_proba, so it could only be judged on "
                                           "class labels; train a classifier that gives probabilities")
        assert 'pyfunc_predict_fn="predict_proba"' in refused["error"]
    finally:
        mlflow.set_tracking_uri(None)
