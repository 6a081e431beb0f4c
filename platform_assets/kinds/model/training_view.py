"""What a hand-in trains on, read the way the platform reads it (docs/ml-engineer.md, "Handing in
a model").

A model's build publishes `training_<model>.<training_table>`: the rows of the dataset version it
trains on that are not in the holdout (`model.entity_key`, `model.test_fraction`). Train on exactly
that frame and log it as your run's training input, and the `champion` gate can compare your model
with the champion fairly; anything else it refuses to compare.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from platform_assets.catalog import load_catalog
from platform_assets.settings import SettingsError, catalog_dir, load_settings

if TYPE_CHECKING:
    import pandas as pd


def read_training_view(model: str) -> pd.DataFrame:
    """The model's training view with plain numpy dtypes: numbers as float64 (NaN for a missing
    value, never pandas' NA), booleans as bool, text as object."""
    from platform_assets.kinds.model.build import read_view, training_view_of
    from platform_assets.resources_config import warehouse_resource

    settings = load_settings()
    deliverable = load_catalog(catalog_dir(settings), settings).deliverables.get(model)
    if deliverable is None or deliverable.kind != "model":
        raise SettingsError(f"'{model}' is not a model in the catalog ({catalog_dir(settings)})")
    schema, view = training_view_of(model, deliverable.spec.model.training_table)
    warehouse = warehouse_resource(settings)
    if not warehouse.schema_exists(schema):
        raise SettingsError(f"{schema}.{view} does not exist in {warehouse.location()} yet: a build of {model} "
                            f"publishes it (deliver run {model} --through staging)")
    return read_view(warehouse, schema, view)


def mlflow_store() -> tuple[str, str]:
    """The MLflow tracking URI and artifact root of the instance in use (platform.yaml, else the
    state folder of DAGSTER_HOME): register where the platform looks."""
    from resources.mlflow_registry import MlflowRegistry

    config = load_settings().mlflow
    registry = MlflowRegistry(tracking_uri=config.tracking_uri, artifact_location=config.artifact_location)
    return registry.uri(), registry.artifact_root()
