"""The code location: `dagster dev`, `dagster asset materialize -m platform_assets.definitions`."""

from __future__ import annotations

import dagster as dg

from platform_assets.factory import build_assets
from platform_assets.resources_config import platform_resources
from platform_assets.settings import PlatformSettings, load_settings

EXECUTORS = {"local": dg.multiprocess_executor}


def build_definitions(settings: PlatformSettings | None = None) -> dg.Definitions:
    """One executor for the whole location, chosen by execution mode (one run has one executor)."""
    settings = settings or load_settings()
    return dg.Definitions(
        assets=build_assets(settings),
        resources=platform_resources(settings),
        executor=EXECUTORS[settings.execution_mode],
    )


defs = build_definitions()
