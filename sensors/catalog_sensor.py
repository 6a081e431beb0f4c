"""The one shape every platform sensor has: a tick over the whole catalog, run by the daemon."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

# What `dg.define_asset_job` returns; Dagster does not export its class, so it is not named here.
AssetJob = Any
Tick = Callable[[dg.SensorEvaluationContext], tuple[Sequence[dg.RunRequest], str]]
Watch = Callable[[dg.SensorEvaluationContext], tuple[Sequence[dg.AssetCheckEvaluation], str]]


def catalog_sensor(name: str, description: str, interval_s: int,
                   target: dg.AssetSelection | AssetJob, tick: Tick) -> dg.SensorDefinition:
    """A sensor, on by default, whose `tick` returns its run requests and next cursor."""

    def evaluate(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        requests, cursor = tick(context)
        return dg.SensorResult(run_requests=list(requests), cursor=cursor)

    return _on_by_default(name, description, interval_s, target, evaluate)


def catalog_watch(name: str, description: str, interval_s: int, watch: Watch) -> dg.SensorDefinition:
    """A sensor, on by default, that requests no run: `watch` returns what it saw, as asset check
    evaluations the daemon records, and its next cursor."""

    def evaluate(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        events, cursor = watch(context)
        return dg.SensorResult(asset_events=list(events), cursor=cursor)

    return _on_by_default(name, description, interval_s, None, evaluate)


def _on_by_default(name: str, description: str, interval_s: int,
                   target: dg.AssetSelection | AssetJob | None,
                   evaluate: Callable[[dg.SensorEvaluationContext], dg.SensorResult]) -> dg.SensorDefinition:
    @dg.sensor(name=name, minimum_interval_seconds=interval_s, target=target, description=description,
               default_status=dg.DefaultSensorStatus.RUNNING)
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        return evaluate(context)

    return _sensor
