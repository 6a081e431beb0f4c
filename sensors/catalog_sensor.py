"""The one shape every platform sensor has: a tick over the whole catalog, run by the daemon."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import dagster as dg

Tick = Callable[[dg.SensorEvaluationContext], tuple[Sequence[dg.RunRequest], str]]


def catalog_sensor(name: str, description: str, interval_s: int, target: dg.AssetSelection,
                   tick: Tick) -> dg.SensorDefinition:
    """A sensor, on by default, whose `tick` returns its run requests and next cursor."""

    @dg.sensor(name=name, minimum_interval_seconds=interval_s, target=target, description=description,
               default_status=dg.DefaultSensorStatus.RUNNING)
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        requests, cursor = tick(context)
        return dg.SensorResult(run_requests=list(requests), cursor=cursor)

    return _sensor
