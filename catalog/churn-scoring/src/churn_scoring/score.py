"""Scores every customer of `customer_features` with the churn model served in the same environment."""

from __future__ import annotations

import json
import os
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pandas as pd

FEATURES = "customer_features"
LABEL = "churned"
KEY = "customer_id"
BATCH = 500


def run(inputs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per customer: its churn probability and the model version that gave it."""
    features = inputs[FEATURES]
    scored_at = datetime.now(UTC).replace(tzinfo=None)
    probabilities: list[float] = []
    versions: list[str] = []
    records = model_records(features)
    for start in range(0, len(records), BATCH):
        batch_probabilities, version = predict(records[start:start + BATCH])
        probabilities += batch_probabilities
        versions += [version] * len(batch_probabilities)
    return pd.DataFrame({KEY: features[KEY].astype(str), "churn_probability": probabilities,
                         "model_version": versions, "scored_at": scored_at})


def model_records(features: pd.DataFrame) -> list[dict[str, Any]]:
    """The model's input rows: every column but the label, decimals as floats, dates as ISO text
    (the model's signature picks the columns it was trained on)."""
    frame = features.drop(columns=[LABEL], errors="ignore").copy()
    for column in frame.columns:
        if frame[column].map(lambda value: isinstance(value, Decimal)).any():
            frame[column] = frame[column].astype(float)
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def predict(records: list[dict[str, Any]]) -> tuple[list[float], str]:
    request = urllib.request.Request(
        os.environ["CHURN_MODEL_URL"].rstrip("/") + "/predict",
        data=json.dumps({"dataframe_records": records}).encode(),
        headers={"Authorization": f"Bearer {os.environ['CHURN_MODEL_TOKEN']}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.load(response)
    scores = [float(row[-1]) if isinstance(row, list) else float(row) for row in body["predictions"]]
    return scores, str(body["version"])
