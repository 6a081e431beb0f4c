"""The `live` check on `<name>/<env>`: is what the environment serves running, since when, how
often was it restarted, and what do its requests look like.

It is non-blocking and recorded from outside runs: by the runtime sensor (sensors/runtime.py),
by `deliver down` (`stopped`) and by executing the check from the UI (a probe now), never by a
deploy run, so a failed deploy of a new version never marks the serving one as down. States:
`up` (running and healthy), `restarting` (a restart is under way or waits for its backoff),
`down` (not running or not healthy, with why), `stopped` (taken down on purpose).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from platform_assets.catalog import Catalog
from platform_assets.kinds.registry import get_handler
from platform_assets.records import env_key

LIVE = "live"
UP, DOWN, RESTARTING, STOPPED = "up", "down", "restarting", "stopped"
FIGURES = ("requests", "rate_per_s", "error_ratio", "p50_ms", "p95_ms", "in_flight")


@dataclass(frozen=True)
class Live:
    state: str
    since: float
    version: str | None = None
    restarts: int | None = None  # restarts by the platform since the deploy (None where Kubernetes restarts pods)
    detail: str = ""
    figures: dict[str, float | None] = field(default_factory=dict)  # serving_metrics.Figures.as_metadata()

    def evaluation(self, name: str, env: str) -> dg.AssetCheckEvaluation:
        """As the sensor and `deliver down` record it (outside any run)."""
        return dg.AssetCheckEvaluation(**self._fields(name, env))

    def result(self, name: str, env: str) -> dg.AssetCheckResult:
        """As an execution of the check (from the UI) yields it."""
        return dg.AssetCheckResult(**self._fields(name, env))

    def _fields(self, name: str, env: str) -> dict[str, Any]:
        metadata: dict[str, Any] = {"state": self.state, "since": _iso(self.since), "since_timestamp": self.since,
                                    "detail": self.detail}
        if self.version:
            metadata["version"] = self.version
        if self.restarts is not None:
            metadata["restarts"] = self.restarts
        metadata.update({k: v for k, v in self.figures.items() if v is not None})
        return {"asset_key": env_key(name, env), "check_name": LIVE, "passed": self.state == UP,
                "severity": dg.AssetCheckSeverity.ERROR if self.state == DOWN else dg.AssetCheckSeverity.WARN,
                "description": f"{self.state} since {_iso(self.since)}" + (f": {self.detail}" if self.detail else ""),
                "metadata": metadata}

    @classmethod
    def of(cls, evaluation: Any) -> Live:
        """Back from a recorded `AssetCheckEvaluation`."""
        values = {k: v.value for k, v in evaluation.metadata.items()}
        return cls(state=str(values.get("state", DOWN)), since=float(values.get("since_timestamp", 0.0)),
                   version=values.get("version"), restarts=values.get("restarts"),
                   detail=str(values.get("detail", "")), figures={k: values[k] for k in FIGURES if k in values})


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def served(catalog: Catalog) -> dict[str, str]:
    """The deliverables whose deploys keep running (a `live` check each), with their owner team."""
    return {d.name: d.spec.owner for d in catalog if get_handler(d.kind).serves}


def live_key(name: str, env: str) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(env_key(name, env), LIVE)


def latest_live(instance: dg.DagsterInstance, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Live]:
    """The newest `live` evaluation of each (deliverable, environment), in one query."""
    keys = {live_key(name, env): (name, env) for name, env in pairs}
    found = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(keys))
    latest = {}
    for key, record in found.items():
        evaluation = record.event.asset_check_evaluation if record.event else None
        if evaluation is not None:
            latest[keys[key]] = Live.of(evaluation)
    return latest


def live_check_specs(pairs: Iterable[tuple[str, str]]) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(LIVE, asset=env_key(name, env), blocking=False,
                              description=f"{name} runs in {env}: up, restarting, down or stopped, since when, "
                                          "restarts, request rate, error ratio and latency (the runtime sensor)")
            for name, env in pairs]
