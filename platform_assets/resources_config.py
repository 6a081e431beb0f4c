"""Which resource serves each role, per environment, from platform.yaml."""

from __future__ import annotations

from typing import Any

import dagster as dg

from platform_assets.settings import PlatformSettings
from platform_assets.stages import target_resource_key
from resources.artifact_store import LocalArtifactStore
from resources.local_process import LocalProcessTarget
from resources.mlflow_registry import MlflowRegistry
from resources.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse


def warehouse_resource(settings: PlatformSettings) -> Warehouse:
    config = settings.warehouse
    if config.type == "postgres":
        return PostgresWarehouse(host=config.host, port=config.port, dbname=config.dbname, user=config.user,
                                 password=dg.EnvVar(config.password_env), sslmode=config.sslmode)
    return DuckDBWarehouse(path=config.path)


def platform_resources(settings: PlatformSettings) -> dict[str, Any]:
    resources: dict[str, Any] = {
        "artifact_store": LocalArtifactStore(),
        "warehouse": warehouse_resource(settings),
        "mlflow": MlflowRegistry(tracking_uri=settings.mlflow.tracking_uri,
                                 artifact_location=settings.mlflow.artifact_location),
    }
    for env in settings.environments:
        resources[target_resource_key(env.name)] = LocalProcessTarget(environment=env.name)
    return resources
