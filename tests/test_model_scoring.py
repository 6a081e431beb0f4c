"""`/predict` speaks MLflow's scoring protocol: the model's own `serving_input_example.json`, every
input format `mlflow models serve` takes, integers for float columns; 401 without the token.

A real MLflow store, real training and a real model server process (the `models` fixture)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import httpx
import mlflow

from platform_assets.model_token import model_token
from tests.conftest import Platform
from tests.test_model_pipeline import MODEL, example, registry


def served_example(version: str) -> dict:
    """The `serving_input_example.json` MLflow wrote when the version was logged."""
    uri = registry().client().get_model_version_download_uri(MODEL, version)
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(f"{uri}/serving_input_example.json", dst_path=tmp)
        return json.loads(Path(path).read_text())


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
    bodies = {
        "serving_input_example.json": served_example(version),
        "dataframe_records": {"dataframe_records": records},
        "dataframe_split": {"dataframe_split": {"columns": columns,
                                                "data": [[row[c] for c in columns] for row in records]}},
        "instances": {"instances": records},
        "inputs": {"inputs": {c: [row[c] for row in records] for c in columns}},
        "integers for float columns": {"dataframe_records": integers},
    }
    answers = {name: httpx.post(predict, json=body, headers=headers, timeout=30) for name, body in bodies.items()}

    assert {name: answer.status_code for name, answer in answers.items()} == dict.fromkeys(bodies, 200), {
        name: answer.text for name, answer in answers.items() if answer.status_code != 200}
    for answer in answers.values():
        assert answer.json()["version"] == version
        assert len(answer.json()["predictions"]) == len(records)
    assert httpx.post(predict, json=bodies["dataframe_split"], timeout=30).status_code == 401
    assert httpx.post(predict, json={"rows": records}, headers=headers, timeout=30).status_code == 422
