"""The code location: `dagster dev`, `dagster asset materialize -m platform_assets.definitions`."""

from __future__ import annotations

import dagster as dg

from platform_assets.factory import build_assets
from platform_assets.resources_config import platform_resources
from platform_assets.settings import PlatformSettings, load_settings


def executor(settings: PlatformSettings) -> dg.ExecutorDefinition:
    """One executor for the whole location, by execution mode: one run has one executor, and the
    k8s executor needs the K8sRunLauncher, so the mode (not a job) decides."""
    if settings.execution_mode == "kubernetes":
        from platform_assets.k8s_executor import kubernetes_executor

        return kubernetes_executor(settings)
    return dg.multiprocess_executor


def build_definitions(settings: PlatformSettings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    return dg.Definitions(
        assets=build_assets(settings),
        resources=platform_resources(settings),
        executor=executor(settings),
    )


defs = build_definitions()
