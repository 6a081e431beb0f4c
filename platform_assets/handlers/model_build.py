"""How a model version comes to be: trained in the sandbox from the pinned data, or adopted from
the registry after its files were checked, then logged, tagged and scored by the platform.

The platform reads the data (it holds the warehouse and MLflow access), the sandbox runs the
deliverable's trainer, and every figure that gates a version (metrics, signature, scores) is
computed here from a model loaded through `model_safety`, never taken from the child.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from platform_assets.fingerprint import source_digest
from platform_assets.handlers.base import BuildFailed, StageContext
from platform_assets.handlers.dataset import pinned_table
from platform_assets.handlers.model_sandbox import check_in_sandbox, train_in_sandbox, trusted_types
from platform_assets.model_safety import (
    HOW_TO_LOG,
    UnsafeModel,
    deserialization_allowed,
    download,
    load_checked,
    load_version,
    model_problems,
    read_flavors,
    recorded_trusted_types,
)
from resources.mlflow_registry import FINGERPRINT_TAG

if TYPE_CHECKING:
    import pandas as pd

    from platform_assets.handlers.model import ModelSettings
    from resources.mlflow_registry import MlflowRegistry

ADOPTED_TAG = "platform.adopted_by_run"
DATASET_TAG = "platform.dataset."


def registry_of(ctx: StageContext) -> MlflowRegistry:
    return ctx.resources.mlflow


@dataclass(frozen=True)
class TrainingData:
    """The pinned table, split the way every build of this spec splits it."""

    dataset: str
    dataset_version: str
    table: str
    frame: pd.DataFrame
    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series

    @property
    def lineage(self) -> dict[str, str]:
        return {f"{DATASET_TAG}{self.dataset}": self.dataset_version, "platform.training_table": self.table}


def training_data(ctx: StageContext) -> TrainingData:
    from platform_assets.handlers.model_training import normalise, split_features

    settings: ModelSettings = ctx.spec.model
    dataset, dataset_version, schema = pinned_table(ctx, settings.training_table, "model.training_table")
    frame = normalise(ctx.resources.warehouse.frame(schema, settings.training_table))
    missing = sorted({settings.label, *settings.exclude} - set(frame.columns))
    if missing:
        raise BuildFailed(f"{ctx.deliverable.path}: fields 'model.label'/'model.exclude' name "
                          f"{', '.join(missing)}, not columns of {settings.training_table} "
                          f"({', '.join(frame.columns)})")
    x_train, x_test, y_train, y_test = split_features(
        frame, settings.label, settings.exclude, settings.test_fraction, settings.random_state)
    return TrainingData(dataset, dataset_version, f"{schema}.{settings.training_table}", frame,
                        x_train, x_test, y_train, y_test)


def train(ctx: StageContext, data: TrainingData) -> dict[str, Any]:
    """Train in the sandbox, score and log the run here, register a version."""
    import mlflow
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.models import infer_signature

    from platform_assets.handlers.model_training import classification_metrics, positive_scores

    settings: ModelSettings = ctx.spec.model
    registry = registry_of(ctx)
    trusted_types(ctx)  # a spec naming a type the platform does not trust stops before training
    fingerprint = model_fingerprint(ctx)
    registry.activate()
    with mlflow.start_run(experiment_id=registry.experiment_id(ctx.name), run_name=f"{ctx.name} build",
                          tags={"platform.deliverable": ctx.name, FINGERPRINT_TAG: fingerprint,
                                "dagster_run_id": ctx.run_id or "", **data.lineage}) as run:
        mlflow.log_params({**settings.params, "label": settings.label, "test_fraction": settings.test_fraction,
                           "random_state": settings.random_state, "features": len(data.x_train.columns)})
        source = CodeDatasetSource({"warehouse": ctx.resources.warehouse.location(), **data.lineage})
        mlflow.log_input(mlflow.data.from_pandas(data.frame, source=source, targets=settings.label,
                                                 name=f"{data.dataset}@{data.dataset_version}"), context="training")
        estimator, types = train_in_sandbox(ctx, data.x_train, data.y_train)
        try:
            probabilities = estimator.predict_proba(data.x_test)
        except Exception as exc:
            raise BuildFailed(f"{ctx.deliverable.path}: field 'model.trainer': the estimator '{settings.trainer}' "
                              f"returned cannot predict_proba the holdout: {exc!r}") from exc
        metrics = classification_metrics(data.y_test, positive_scores(probabilities))
        mlflow.log_metrics(metrics)
        info = log_model(ctx, estimator, types, infer_signature(data.x_test, probabilities), data.x_test.head(3))
    version = str(info.registered_model_version)
    client = registry.client()
    for key, value in {**data.lineage, FINGERPRINT_TAG: fingerprint}.items():  # the fingerprint last: marks complete
        client.set_model_version_tag(ctx.name, version, key, value)
    ctx.log.info(f"registered {ctx.name} version {version} from run {run.info.run_id}: roc_auc "
                 f"{metrics['roc_auc']:.4f} on {len(data.x_test)} holdout rows of {data.dataset} "
                 f"{data.dataset_version}")
    return {"version": version, "run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
            "metrics": metrics}


def log_model(ctx: StageContext, estimator: Any, types: list[str], signature: Any, example: pd.DataFrame) -> Any:
    """Log and register in skops format, recording exactly the non-default types the model needs.

    MLflow saves it, loads it back and infers its requirements by loading it in a subprocess: the
    platform's own estimator, already checked, so deserialization is allowed around this call."""
    import mlflow

    with deserialization_allowed():
        return mlflow.sklearn.log_model(
            estimator, name="model", signature=signature, input_example=example, pyfunc_predict_fn="predict_proba",
            registered_model_name=ctx.name, serialization_format="skops", skops_trusted_types=types or None)


def adopt(ctx: StageContext, version: str, data: TrainingData) -> dict[str, Any]:
    """A version registered outside the platform (from a notebook, say) enters the pipeline.

    Its MLmodel file alone is read first: anything but skops with trusted types is refused without
    loading it. A candidate that passes is loaded and made to predict in the sandbox, then loaded
    here, scored on the same holdout a platform build would use, and gated like any other."""
    from mlflow.exceptions import MlflowException

    registry = registry_of(ctx)
    client = registry.client()
    try:
        registered = client.get_model_version(ctx.name, version)
    except MlflowException as exc:
        raise BuildFailed(f"{ctx.name} version {version} is not in the registry at {registry.uri()}") from exc
    uri = f"models:/{ctx.name}/{version}"
    what = f"{ctx.name} version {version} (registered outside the platform by run {registered.run_id})"
    trusted = trusted_types(ctx)
    registry.activate()
    flavors = read_flavors(uri)
    problems = model_problems(flavors, trusted)
    if problems:
        raise BuildFailed(
            f"{what} is not adopted and was not loaded: {'; '.join(problems)}. Log it with {HOW_TO_LOG}, "
            f"naming in skops_trusted_types only types the platform trusts for it ({', '.join(trusted) or 'none'}; "
            f"{ctx.settings.source or 'platform.yaml'}: field 'models.trusted_types', narrowed by "
            f"{ctx.deliverable.path}: field 'model.trusted_types').")
    with tempfile.TemporaryDirectory(prefix=f"adopt-{ctx.name}-") as tmp:
        folder = download(uri, Path(tmp))
        check_in_sandbox(ctx, what, folder / flavors["sklearn"]["pickled_model"], recorded_trusted_types(flavors),
                         data.x_test.head(3))
        try:
            model = load_checked(uri, folder, trusted)
        except UnsafeModel as exc:  # its files changed since the MLmodel was read
            raise BuildFailed(f"{what}: {exc}") from exc
    scored = score_model(model, version, data.x_test.assign(**{ctx.spec.model.label: data.y_test}),
                         ctx.spec.model.label)
    if "error" in scored:
        raise BuildFailed(f"{what} cannot score {data.table}: {scored['error']}")
    for key, value in {**data.lineage, ADOPTED_TAG: ctx.run_id or "true"}.items():
        client.set_model_version_tag(ctx.name, version, key, value)
    ctx.log.info(f"adopted {what}: roc_auc {scored['metrics']['roc_auc']:.4f} on {len(data.x_test)} holdout rows")
    return {"version": version, "run_id": registered.run_id, "experiment_id": None, "metrics": scored["metrics"],
            "adopted": True}


def model_fingerprint(ctx: StageContext) -> str:
    """Trainer code, model settings and the upstream data versions: what decides the trained model
    (how it is watched once served, `drift` and `on_drift`, does not)."""
    digest = hashlib.sha256(source_digest(ctx.deliverable.folder).encode())
    digest.update(ctx.spec.model.model_dump_json(exclude={"drift", "on_drift"}).encode())
    digest.update(json.dumps(ctx.upstream_versions, sort_keys=True).encode())
    return digest.hexdigest()[:12]


def score(ctx: StageContext, version: str, holdout: pd.DataFrame, label: str) -> dict[str, Any]:
    """Scores and metrics of a registered version, checked and loaded as it will be served (pyfunc)."""
    registry_of(ctx).activate()
    try:
        model = load_version(f"models:/{ctx.name}/{version}", ctx.settings.models.trusted_types)
    except UnsafeModel as exc:
        return {"version": version, "error": str(exc), "metrics": {}}
    return score_model(model, version, holdout, label)


def score_model(model: Any, version: str, holdout: pd.DataFrame, label: str) -> dict[str, Any]:
    from platform_assets.handlers.model_training import classification_metrics, positive_scores

    try:
        scores = positive_scores(model.predict(holdout.drop(columns=[label])))
    except Exception as exc:  # the champion may expect other features than this holdout has
        return {"version": version, "error": f"{type(exc).__name__}: {exc}", "metrics": {}}
    return {"version": version, "scores": scores, "metrics": classification_metrics(holdout[label], scores)}
