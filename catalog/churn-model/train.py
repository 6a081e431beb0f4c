"""Churn model trainer.

The platform calls `train(features, label, params)` with the training split of the published
`customer_features` (identifiers, dates and leaking columns already excluded by the spec) and
the spec's `model.params`; it splits, scores, logs, registers and serves. Only modelling here.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder


def train(features: pd.DataFrame, label: pd.Series, params: dict[str, Any]) -> Pipeline:
    categorical = features.select_dtypes(include=["object", "string"]).columns.tolist()
    preprocess = ColumnTransformer(
        [("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical)],
        remainder="passthrough",
    )
    classifier = HistGradientBoostingClassifier(random_state=0, **params)
    return Pipeline([("preprocess", preprocess), ("classifier", classifier)]).fit(features, label)
