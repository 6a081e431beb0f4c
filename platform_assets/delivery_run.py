"""`deliver run NAME`: deliver one deliverable, and first whatever upstream it still lacks, here.

It runs in this process against the instance of DAGSTER_HOME, as `dagster asset materialize`
does, so it needs no webserver; the runs and their records are the same as any other. Each stage
is a run of its own: a stage that fails then fails only its own run, and no later environment is
planned in it (the UI would show that environment as failed while its old version serves). After
each stage it hands back what the event log says about it (stage_report.py).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import nullcontext, redirect_stdout
from dataclasses import dataclass

import dagster as dg

from platform_assets.catalog import Catalog
from platform_assets.errors import ActionRefused
from platform_assets.records import TRIGGER_TAG, build_key, env_key, evaluate_key, latest
from platform_assets.settings import PlatformSettings
from platform_assets.stage_report import StageReport, stage_report

TRIGGER = "cli-run"
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}  # the summary replaces Dagster's log
Tags = Callable[[str, str | None], dict[str, str]]  # (deliverable, environment or None) -> who asks


@dataclass(frozen=True)
class Stage:
    deliverable: str
    key: dg.AssetKey
    environment: str | None  # None for build and evaluate
    reason: str  # why it is delivered: "asked" or "needed by <name>"


def plan(instance: dg.DagsterInstance, catalog: Catalog, settings: PlatformSettings, name: str,
         through: str | None = None) -> list[Stage]:
    """`name` through `through` (default: the last environment), after every upstream that has no
    version in the last environment yet, each through the last one (builds read it there)."""
    if name not in catalog.deliverables:
        raise ActionRefused(f"no deliverable '{name}' in {catalog.root}; known: {', '.join(catalog.deliverables)}")
    envs = settings.environment_names
    through = through or settings.last_environment
    if through not in envs:
        raise ActionRefused(f"--through {through}: no such environment; valid: {', '.join(envs)}")
    needed_by = _lacking_upstreams(instance, catalog, settings, name)
    stages = []
    for deliverable in catalog:  # upstream-first
        if deliverable.name in needed_by:
            stages += _stages(deliverable.name, envs, f"needed by {needed_by[deliverable.name]}")
    return stages + _stages(name, envs[: envs.index(through) + 1], "asked")


def _lacking_upstreams(instance: dg.DagsterInstance, catalog: Catalog, settings: PlatformSettings,
                       name: str) -> dict[str, str]:
    """Every upstream (transitively) with nothing in the last environment -> the one it is needed by."""
    lacking: dict[str, str] = {}
    pending = [(upstream, name) for upstream in catalog.deliverables[name].spec.depends_on]
    while pending:
        upstream, needed_by = pending.pop()
        if upstream in lacking or latest(instance, env_key(upstream, settings.last_environment)) is not None:
            continue
        lacking[upstream] = needed_by
        pending += [(further, upstream) for further in catalog.deliverables[upstream].spec.depends_on]
    return lacking


def _stages(name: str, envs: list[str], reason: str) -> list[Stage]:
    return [Stage(name, build_key(name), None, reason), Stage(name, evaluate_key(name), None, reason),
            *(Stage(name, env_key(name, env), env, reason) for env in envs)]


def deliver(instance: dg.DagsterInstance, settings: PlatformSettings, catalog: Catalog, stages: list[Stage],
            tags: Tags, before: Callable[[Stage], None], verbose: bool = False) -> Iterator[StageReport]:
    """Run the stages in order, one run each, and report each; stop after the first that fails."""
    from platform_assets.factory import build_assets
    from platform_assets.resources_config import platform_resources

    assets = build_assets(settings, catalog)
    resources = platform_resources(settings)
    for stage in stages:
        before(stage)
        # dbt writes its own log to stdout; the summary says what matters (--verbose keeps both)
        with nullcontext() if verbose else redirect_stdout(io.StringIO()):
            result = dg.materialize(
                assets, selection=[stage.key], instance=instance, resources=resources, raise_on_error=False,
                run_config=None if verbose else QUIET,
                tags={TRIGGER_TAG: TRIGGER, "platform/deliverable": stage.deliverable,
                      **tags(stage.deliverable, stage.environment)})
        report = stage_report(instance, result.run_id, stage.key, result.success)
        yield report
        if not report.success:
            return
