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
from platform_assets.kinds.dataset.handler import pinned_table
from platform_assets.kinds.model.safety import (
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
from platform_assets.kinds.model.sandbox import check_in_sandbox, train_in_sandbox, trusted_types
from resources.mlflow_registry import FINGERPRINT_TAG

if TYPE_CHECKING:
    import pandas as pd

    from platform_assets.kinds.model.handler import ModelSettings
    from resources.mlflow_registry import MlflowRegistry
    from resources.warehouse import Warehouse

ADOPTED_TAG = "platform.adopted_by_run"
DATASET_TAG = "platform.dataset."


def registry_of(ctx: StageContext) -> MlflowRegistry:
    return ctx.resources.mlflow


@dataclass(frozen=True)
class TrainingData:
    """The pinned table split by the hash of its entity key: the training view and the holdout."""

    dataset: str
    dataset_version: str
    table: str
    view: str  # schema.view: what a hand-in trains on
    frame: pd.DataFrame  # the training view as the reader hands it out (what the platform trains on)
    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series

    @property
    def lineage(self) -> dict[str, str]:
        return {f"{DATASET_TAG}{self.dataset}": self.dataset_version, "platform.training_table": self.table,
                "platform.training_view": self.view}


def training_view_of(name: str, table: str) -> tuple[str, str]:
    """(schema, view) of a model's training view: `training_<model>.<table>`, the newest build's
    dataset version; `<table>__<dataset version>` stays for each version."""
    return f"training_{name}".replace("-", "_"), table


def read_view(warehouse: Warehouse, schema: str, view: str) -> pd.DataFrame:
    """The one reader of training views (the platform's and a hand-in's): plain numpy dtypes."""
    from platform_assets.kinds.model.training import normalise

    return normalise(warehouse.frame(schema, view))


def training_data(ctx: StageContext) -> TrainingData:
    """Publishes the training view of the pinned dataset version (every row outside the holdout)
    and reads it back through the same reader a hand-in uses, so both train on the same rows."""
    from platform_assets.kinds.model.training import features_and_label, holdout_predicate, normalise

    settings: ModelSettings = ctx.spec.model
    warehouse: Warehouse = ctx.resources.warehouse
    dataset, dataset_version, schema = pinned_table(ctx, settings.training_table, "model.training_table")
    table = settings.training_table
    columns = warehouse.describe(schema, [table])[table]["columns"]
    missing = sorted({settings.label, settings.entity_key, *settings.exclude} - set(columns))
    if missing:
        raise BuildFailed(f"{ctx.deliverable.path}: fields 'model.label'/'model.entity_key'/'model.exclude' name "
                          f"{', '.join(missing)}, not columns of {table} ({', '.join(columns)})")
    holdout = holdout_predicate(settings.entity_key, settings.test_fraction)
    view_schema, view = training_view_of(ctx.name, table)
    rows = f'select * from "{schema}"."{table}" where not ({holdout})'
    warehouse.create_views(view_schema, {view: rows, f"{view}__{dataset_version}": rows})
    frame = read_view(warehouse, view_schema, view)
    x_train, y_train = features_and_label(frame, settings.label, settings.exclude)
    x_test, y_test = features_and_label(normalise(warehouse.frame(schema, table, holdout)), settings.label,
                                        settings.exclude)
    if y_train.nunique() < 2 or y_test.nunique() < 2:
        raise BuildFailed(f"{ctx.deliverable.path}: field 'model.test_fraction': the split by "
                          f"{settings.entity_key} leaves {len(x_train)} training and {len(x_test)} holdout rows, "
                          "one side without both classes")
    return TrainingData(dataset, dataset_version, f"{schema}.{table}", f"{view_schema}.{view}", frame,
                        x_train, x_test, y_train, y_test)


def train(ctx: StageContext, data: TrainingData) -> dict[str, Any]:
    """Train in the sandbox, score and log the run here, register a version."""
    import mlflow
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.models import infer_signature

    from platform_assets.kinds.model.training import classification_metrics, positive_scores

    settings: ModelSettings = ctx.spec.model
    registry = registry_of(ctx)
    trusted_types(ctx)  # a spec naming a type the platform does not trust stops before training
    fingerprint = model_fingerprint(ctx)
    registry.activate()
    with mlflow.start_run(experiment_id=registry.experiment_id(ctx.name), run_name=f"{ctx.name} build",
                          tags={"platform.deliverable": ctx.name, FINGERPRINT_TAG: fingerprint,
                                "dagster_run_id": ctx.run_id or "", **data.lineage}) as run:
        mlflow.log_params({**settings.params, "label": settings.label, "test_fraction": settings.test_fraction,
                           "entity_key": settings.entity_key, "features": len(data.x_train.columns)})
        source = CodeDatasetSource({"warehouse": ctx.resources.warehouse.location(), **data.lineage})
        mlflow.log_input(mlflow.data.from_pandas(data.frame, source=source, targets=settings.label,
                                                 name=f"{data.view}@{data.dataset_version}"), context="training")
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

    from platform_assets.kinds.model.training import training_digest

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
    run = client.get_run(registered.run_id)
    view = {"name": data.view, "digest": training_digest(data.frame), "rows": len(data.frame)}
    # The Dagster run, as on the platform's own runs; not `platform.deliverable`, which marks runs the
    # platform trained (the registrations sensor adopts only the others).
    for key, value in {"dagster_run_id": ctx.run_id or "", "platform.adopted_into": ctx.name}.items():
        client.set_tag(registered.run_id, key, value)
    ctx.log.info(f"adopted {what}: roc_auc {scored['metrics']['roc_auc']:.4f} on {len(data.x_test)} holdout rows")
    return {"version": version, "run_id": registered.run_id, "experiment_id": run.info.experiment_id,
            "metrics": scored["metrics"], "adopted": True, "logged_inputs": logged_inputs(run),
            "training_view": view}


def logged_inputs(run: Any) -> list[dict[str, Any]]:
    """The training data a run logged itself (MLflow dataset inputs): name, digest, source and rows."""
    found = []
    for logged in run.inputs.dataset_inputs if run.inputs else []:
        dataset = logged.dataset
        found.append({"name": dataset.name, "digest": dataset.digest, "source": dataset.source,
                      "rows": json.loads(dataset.profile or "{}").get("num_rows")})
    return found


def describe_inputs(inputs: list[dict[str, Any]]) -> str:
    return "; ".join(f"{i['name']} (digest {i['digest']}, {i['rows'] if i['rows'] is not None else '?'} rows)"
                     for i in inputs) or "none logged"


def unfair_comparison(record: dict[str, Any]) -> str | None:
    """Why an adopted version cannot be compared with the champion on the holdout, if it cannot:
    its run must have logged the training view itself (same digest), not rows the holdout holds."""
    if not record.get("adopted"):
        return None  # the platform trained it on the training view
    view, inputs = record["training_view"], record.get("logged_inputs") or []
    if any(i["digest"] == view["digest"] for i in inputs):
        return None
    how = (f"log the training view you trained on: mlflow.log_input(mlflow.data.from_pandas(frame), "
           f"context=\"training\") with frame from {view['name']} ({view['rows']} rows, digest {view['digest']})")
    if not inputs:
        return f"cannot compare fairly: its run logged no training data; {how}"
    if any((i["rows"] or 0) > view["rows"] for i in inputs):
        return (f"cannot compare fairly: trained on holdout rows (its run logged {describe_inputs(inputs)}, more "
                f"than the {view['rows']} rows of {view['name']}, which excludes the holdout); {how}")
    return f"cannot compare fairly: its logged training data ({describe_inputs(inputs)}) is not {view['name']}; {how}"


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
    from platform_assets.kinds.model.training import classification_metrics, classifier_scores

    try:
        scores = classifier_scores(model, holdout.drop(columns=[label]))
    except Exception as exc:  # the champion may expect other features than this holdout has
        return {"version": version, "error": f"{type(exc).__name__}: {exc}", "metrics": {}}
    return {"version": version, "scores": scores, "metrics": classification_metrics(holdout[label], scores)}
