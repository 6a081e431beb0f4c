"""What one code location holds: the whole catalog (`definitions.py`) or one team's part of it
(`team_locations.py`); workspace.py says which locations there are."""

from __future__ import annotations

import dagster as dg

from platform_assets.approval_job import approval_job
from platform_assets.catalog import Catalog, load_catalog
from platform_assets.factory import build_assets, live_checks
from platform_assets.freshness import freshness_checks, freshness_sensor
from platform_assets.kinds.model.drift_check import drift_checks, drift_schedule
from platform_assets.kinds.registry import HANDLERS
from platform_assets.local_executor import chain_in_run_executor
from platform_assets.metrics_asset import delivery_metrics_asset, delivery_metrics_schedule
from platform_assets.resources_config import platform_resources
from platform_assets.settings import PlatformSettings, catalog_dir, load_settings
from platform_assets.workspace import SINGLE_MODULE, TEAM_MODULE, holds_platform_assets
from sensors.promotion import promotion_sensors
from sensors.runtime import runtime_sensor
from sensors.triggers import trigger_sensors


def executor(settings: PlatformSettings, team: str | None = None) -> dg.ExecutorDefinition:
    """One executor for the whole location, by execution mode: one run has one executor, and the
    k8s executor needs the K8sRunLauncher, so the mode (not a job) decides."""
    if settings.execution_mode == "kubernetes":
        from platform_assets.k8s_executor import kubernetes_executor

        return kubernetes_executor(settings)
    local = chain_in_run_executor if settings.execution.local_chain_in_run else dg.multiprocess_executor
    if settings.execution.local_start_method == "spawn":
        return local
    # A chain's steps run in the run's process (local_executor.py); other runs' steps fork from a
    # server that imported the location's module (Dagster, the catalog, the asset graph) once per run
    # instead of paying that load per step. Heavy libraries are imported where used, so the preload
    # stays small. A team's module builds the team its process names (workspace.LOCATION_ENV) at
    # import; step_preload then adds what each step would load again before its first line (the
    # instance's storages, the repository).
    return local.configured({"start_method": {"forkserver": {"preload_modules": preload_modules(team)}}},
                            name=dg.multiprocess_executor.name)


def preload_modules(team: str | None = None) -> list[str]:
    """What the local executor's forkserver imports, in order: the location's module, then what a step
    needs before its first line (step_preload.py)."""
    return [SINGLE_MODULE if team is None else TEAM_MODULE, "platform_assets.step_preload"]


def build_definitions(settings: PlatformSettings | None = None, team: str | None = None,
                      catalog: Catalog | None = None) -> dg.Definitions:
    """The whole catalog's location, or (`team`) that team's: its deliverables, checks, sensors and
    jobs; the shared location (and the single one) adds the platform's own assets."""
    settings = settings or load_settings()
    catalog = catalog or load_catalog(catalog_dir(settings), settings)
    own = catalog.owned_by(team)
    sensors = trigger_sensors(own, settings)
    if len(own):  # it also deploys evaluated versions into the first environment
        sensors += promotion_sensors(own, settings)
    live = live_checks(own, settings)
    if live is not None:
        sensors.append(runtime_sensor(own, settings))
    fresh = freshness_checks(own, settings)
    if fresh:
        sensors.append(freshness_sensor(fresh, settings))
    drift = drift_checks(own, settings)
    shared = holds_platform_assets(team)
    metrics = [delivery_metrics_asset(catalog, settings)] if shared else []
    location = dg.Definitions(
        assets=[*build_assets(settings, catalog, team), *metrics],
        asset_checks=[*([live] if live is not None else []), *fresh, *([drift] if drift else [])],
        resources=platform_resources(settings),
        executor=executor(settings, team),
        sensors=sensors,
        jobs=[approval_job(own, settings)],
        schedules=[*([delivery_metrics_schedule()] if shared else []),
                   *([drift_schedule(drift, settings)] if drift else [])],
    )
    return dg.Definitions.merge(location, *kind_definitions(own, settings))


def kind_definitions(catalog: Catalog, settings: PlatformSettings) -> list[dg.Definitions]:
    """What each kind adds for its deliverables beyond the four stages (a batch job's schedules)."""
    found = (handler.kind_definitions([d for d in catalog if d.kind == kind], settings)
             for kind, handler in HANDLERS.items())
    return [definitions for definitions in found if definitions is not None]
