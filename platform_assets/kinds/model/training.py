"""Plain functions the model kind trains and scores with (pandas, scikit-learn, matplotlib).

Imported only by the model handler's stage functions, never while loading definitions.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from platform_assets.handlers.base import BuildFailed
from platform_assets.handlers.spec_paths import resolve_in_folder
from resources.warehouse import quote_safe


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Warehouse rows as model inputs: decimals and integers as float64 (nullable), booleans as bool.

    The signature is inferred from these types, and a served model accepts exactly them, so they
    must not depend on which warehouse driver produced the rows.
    """
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        sample = series.dropna()
        first = sample.iloc[0] if len(sample) else None
        if isinstance(first, Decimal) or pd.api.types.is_integer_dtype(series):
            out[column] = pd.to_numeric(series, errors="coerce").astype("float64")
        elif isinstance(first, bool | np.bool_):
            out[column] = series.astype(bool)
    return out


HASH_SPACE = 16**8  # the first 8 hex digits of an md5


def holdout_predicate(entity_key: str, fraction: float) -> str:
    """SQL that is true for the holdout rows: those whose md5 of the entity key falls in the first
    `fraction` of the hash space. It depends on the data only (not on a seed, a row order or who
    splits), gives the same answer in DuckDB and PostgreSQL (md5 of the key's text, compared as
    lower-case hex), and keeps an entity on its side of the split in every dataset version."""
    threshold = f"{int(fraction * HASH_SPACE):08x}"
    return f"substr(md5(cast(\"{quote_safe(entity_key)}\" as varchar)), 1, 8) < '{threshold}'"


def features_and_label(frame: pd.DataFrame, label: str, exclude: list[str]) -> tuple[pd.DataFrame, pd.Series]:
    return frame.drop(columns=[label, *exclude]), frame[label].astype(int)


def training_digest(frame: pd.DataFrame) -> str:
    """MLflow's digest of a DataFrame, as `mlflow.data.from_pandas(frame)` logs it."""
    import mlflow

    return mlflow.data.from_pandas(frame).digest


def trainer_source(spec_path: Path, reference: str) -> tuple[Path, str]:
    """Where `train.py:train` is: the file beside the spec and the function name; errors name the
    spec field. The one place that resolves the trainer (it runs in the sandbox, not here)."""
    filename, _, function = reference.partition(":")
    source = resolve_in_folder(spec_path, "model.trainer", filename)
    if not source.is_file():
        raise BuildFailed(f"{spec_path}: field 'model.trainer': {source} does not exist")
    return source, function


def positive_scores(output: Any) -> np.ndarray:
    """Scores of the positive class from predict_proba output (n rows, 2 columns) or a score column (n)."""
    array = np.asarray(output.values if hasattr(output, "values") else output, dtype=float)
    return array[:, -1] if array.ndim == 2 else array


def classifier_scores(model: Any, features: pd.DataFrame) -> np.ndarray:
    """Positive-class probabilities whatever the pyfunc `predict_fn`: a classifier logged with
    MLflow's default (`predict`, class labels) is scored through its estimator's predict_proba, so
    its roc_auc is the real one, not that of 0/1 labels. Only the sklearn flavour is admitted
    (model_safety), so the raw model is a scikit-learn estimator."""
    estimator = model.get_raw_model()
    if not hasattr(estimator, "predict_proba"):
        raise ValueError(
            f"{type(estimator).__name__} has no predict_proba, so it could only be judged on class labels; "
            "train a classifier that gives probabilities (for SVC: probability=True) and log it with "
            "mlflow.sklearn.log_model(..., pyfunc_predict_fn=\"predict_proba\")")
    return positive_scores(estimator.predict_proba(features))


def classification_metrics(y_true: pd.Series, scores: np.ndarray) -> dict[str, float]:
    from sklearn import metrics

    predicted = (scores >= 0.5).astype(int)
    return {
        "roc_auc": float(metrics.roc_auc_score(y_true, scores)),
        "average_precision": float(metrics.average_precision_score(y_true, scores)),
        "accuracy": float(metrics.accuracy_score(y_true, predicted)),
        "precision": float(metrics.precision_score(y_true, predicted, zero_division=0)),
        "recall": float(metrics.recall_score(y_true, predicted, zero_division=0)),
        "f1": float(metrics.f1_score(y_true, predicted, zero_division=0)),
        "log_loss": float(metrics.log_loss(y_true, np.clip(scores, 1e-7, 1 - 1e-7))),
    }


def roc_plot(curves: dict[str, tuple[pd.Series, np.ndarray]], path: Path, title: str) -> Path:
    """ROC curves of the challenger and the champion on the same holdout, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    figure, axes = plt.subplots(figsize=(4.5, 4), dpi=80)
    for label, (y_true, scores) in curves.items():
        fpr, tpr, _ = roc_curve(y_true, scores)
        axes.plot(fpr, tpr, label=f"{label} (AUC {roc_auc_score(y_true, scores):.3f})")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)
    return path
