"""{{name}} trainer.

The platform calls `train(features, label, params)` with the training rows of the published
`customer_features` (the spec's `exclude` columns removed, the holdout left out) and the spec's
`model.params`; it scores the result on the holdout, logs and registers it in MLflow and serves it.
Gradient boosting takes missing values as they come; its tree predictor is a type the platform
team reviewed (platform.yaml `models.trusted_types`), which the spec names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline


def train(features: pd.DataFrame, label: pd.Series, params: dict[str, Any]) -> Pipeline:
    """Imports inside: the platform's sandbox child imports this file only to call it."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    categorical = features.select_dtypes(include=["object", "string"]).columns.tolist()
    preprocess = ColumnTransformer(
        [("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical)],
        remainder="passthrough",
    )
    classifier = HistGradientBoostingClassifier(random_state=0, **params)
    return Pipeline([("preprocess", preprocess), ("classifier", classifier)]).fit(features, label)
