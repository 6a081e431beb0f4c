"""Which resource serves each role, per environment, from platform.yaml."""

from __future__ import annotations

from typing import Any

import dagster as dg

from platform_assets.settings import PlatformSettings
from platform_assets.stages import target_resource_key
from resources.artifact_store import LocalArtifactStore
from resources.local_process import LocalProcessTarget
from resources.report_store import LocalReportStore, ReportStore
from resources.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse


def warehouse_resource(settings: PlatformSettings) -> Warehouse:
    config = settings.warehouse
    if config.type == "postgres":
        return PostgresWarehouse(host=config.host, port=config.port, dbname=config.dbname, user=config.user,
                                 password=dg.EnvVar(config.password_env), sslmode=config.sslmode)
    return DuckDBWarehouse(path=config.path)


def report_store_resource(settings: PlatformSettings) -> ReportStore:
    """Where notebook reports are published: a local folder in the state folder (S3 arrives with issue 7)."""
    return LocalReportStore()


def platform_resources(settings: PlatformSettings) -> dict[str, Any]:
    resources: dict[str, Any] = {"artifact_store": LocalArtifactStore(), "warehouse": warehouse_resource(settings),
                                 "report_store": report_store_resource(settings)}
    for env in settings.environments:
        resources[target_resource_key(env.name)] = LocalProcessTarget(environment=env.name)
    return resources
