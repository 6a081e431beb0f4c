"""Which resource serves each role, per environment, from platform.yaml."""

from __future__ import annotations

from typing import Any

from platform_assets.settings import PlatformSettings
from platform_assets.stages import target_resource_key
from resources.artifact_store import LocalArtifactStore
from resources.local_process import LocalProcessTarget
from resources.warehouse import DuckDBWarehouse


def platform_resources(settings: PlatformSettings) -> dict[str, Any]:
    resources: dict[str, Any] = {"artifact_store": LocalArtifactStore(), "warehouse": DuckDBWarehouse()}
    for env in settings.environments:
        resources[target_resource_key(env.name)] = LocalProcessTarget(environment=env.name)
    return resources
