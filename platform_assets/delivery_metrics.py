"""DORA's four delivery metrics, for every kind, computed from the event log alone.

- deployment frequency: healthy deploys to the last environment (prod) in the window, per day;
- lead time for changes: from the detected change (the creation of the run that first built a
  version: a sensor's tick, or a person's launch) to that version's first healthy prod record;
- change failure rate: prod deploys that started but were unhealthy (rolled back or not) over all
  prod deploys that started; a deploy that never started (`deploy_failed`: nothing changed) is
  counted apart as a failed attempt, since prod kept serving;
- time to restore: from such an unhealthy deploy to the next healthy prod record.

The window is read with three batched queries (materializations, observations, run records), so
the `platform/delivery_metrics` asset costs the same for 5 deliverables as for 1,000.
"""

from __future__ import annotations

import statistics
import warnings
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import dagster as dg

from platform_assets.catalog import Catalog
from platform_assets.records import KEPT, observed, recorded
from platform_assets.settings import PlatformSettings

DAY_S = 86400.0
BUILD_LOOKBACK_S = 90 * DAY_S  # how long before the window a version deployed in it may have been built


@dataclass
class DeliveryFigures:
    """The four figures of one deliverable, kind or team over a window."""

    scope: str
    deploys: int = 0
    deploys_per_day: float = 0.0
    lead_time_s: float | None = None  # median
    change_failure_rate: float | None = None
    time_to_restore_s: float | None = None  # median
    unhealthy_deploys: int = 0
    failed_attempts: int = 0  # did not start; prod kept serving
    lead_times_s: list[float] = field(default_factory=list, repr=False)
    restores_s: list[float] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("lead_times_s", "restores_s")}


@dataclass(frozen=True)
class ProdEvent:
    """One thing that happened in the last environment of a deliverable, in time order."""

    timestamp: float
    deliverable: str
    event: str  # deploy | rollback (a healthy record restoring an earlier version) | unhealthy | failed_attempt
    version: str
    run_id: str = ""


def _events(instance: dg.DagsterInstance, event_type: dg.DagsterEventType, since: float) -> list[dg.EventLogRecord]:
    with warnings.catch_warnings():  # the one query that reads every asset's events of a window at once
        warnings.simplefilter("ignore", UserWarning)
        return list(instance.get_event_records(dg.EventRecordsFilter(event_type=event_type, after_timestamp=since),
                                               ascending=True))


def prod_events(instance: dg.DagsterInstance, catalog: Catalog, settings: PlatformSettings,
                since: float) -> tuple[list[ProdEvent], dict[tuple[str, str], float]]:
    """What happened in prod since `since`, and when each version's first build run was created."""
    last = settings.last_environment
    names = set(catalog.deliverables)
    events: list[ProdEvent] = []
    build_runs: dict[tuple[str, str], str] = {}
    for record in _events(instance, dg.DagsterEventType.ASSET_MATERIALIZATION, since - BUILD_LOOKBACK_S):
        name, stage = _name_stage(record, names)
        deployed = recorded(record.event_log_entry)
        if deployed is None or name is None:
            continue
        if stage == "build":
            build_runs.setdefault((name, deployed.version), record.event_log_entry.run_id)
        elif stage == last and record.timestamp >= since and not deployed.metadata.get(KEPT):
            # a `kept` record restates what still serves; its failed attempt is observed apart
            if deployed.metadata.get("healthy") is not True:
                state = "unhealthy"
            else:
                state = "rollback" if deployed.metadata.get("rollback_from") not in (None, "none") else "deploy"
            events.append(ProdEvent(record.timestamp, name, state, deployed.version, record.event_log_entry.run_id))
    for record in _events(instance, dg.DagsterEventType.ASSET_OBSERVATION, since):
        name, stage = _name_stage(record, names)
        metadata = observed(record)
        kind = {"deploy_unhealthy": "unhealthy", "deploy_failed": "failed_attempt"}.get(str(metadata.get("event")))
        if name is not None and stage == last and kind:
            events.append(ProdEvent(record.timestamp, name, kind, str(metadata.get("attempted_version")),
                                    record.event_log_entry.run_id))
    records = instance.get_run_records(dg.RunsFilter(run_ids=sorted(set(build_runs.values())))) if build_runs else []
    created = {r.dagster_run.run_id: r.create_timestamp.timestamp() for r in records}
    changes = {key: created[run_id] for key, run_id in build_runs.items() if run_id in created}
    return _one_per_deploy(sorted(events, key=lambda e: e.timestamp)), changes


def _one_per_deploy(events: list[ProdEvent]) -> list[ProdEvent]:
    """An unhealthy deploy that nothing could replace is both observed (`deploy_unhealthy`) and
    recorded (`healthy: false`) by its run: it counts once."""
    seen: set[tuple[str, str, str]] = set()
    kept = []
    for event in events:
        key = (event.deliverable, event.version, event.run_id)
        if event.event == "unhealthy" and key in seen:
            continue
        if event.event == "unhealthy":
            seen.add(key)
        kept.append(event)
    return kept


def _name_stage(record: dg.EventLogRecord, names: set[str]) -> tuple[str | None, str]:
    path = record.asset_key.path if record.asset_key else []
    return (path[0], path[1]) if len(path) == 2 and path[0] in names else (None, "")


def figures_of(scope: str, events: Iterable[ProdEvent], changes: dict[tuple[str, str], float],
               window_days: float) -> DeliveryFigures:
    """The four figures over `events` (in time order, possibly of several deliverables)."""
    figures = DeliveryFigures(scope)
    shipped: set[tuple[str, str]] = set()
    down_since: dict[str, float] = {}
    for event in events:
        if event.event == "failed_attempt":
            figures.failed_attempts += 1
        elif event.event == "unhealthy":
            figures.unhealthy_deploys += 1
            down_since.setdefault(event.deliverable, event.timestamp)
        else:
            if event.deliverable in down_since:  # healthy again after an unhealthy deploy: restored
                figures.restores_s.append(event.timestamp - down_since.pop(event.deliverable))
            if event.event == "deploy":
                figures.deploys += 1
                key = (event.deliverable, event.version)
                if key not in shipped and key in changes:
                    figures.lead_times_s.append(max(0.0, event.timestamp - changes[key]))
                shipped.add(key)
    started = figures.deploys + figures.unhealthy_deploys
    figures.deploys_per_day = round(figures.deploys / window_days, 3) if window_days else 0.0
    figures.lead_time_s = _median(figures.lead_times_s)
    figures.time_to_restore_s = _median(figures.restores_s)
    figures.change_failure_rate = round(figures.unhealthy_deploys / started, 3) if started else None
    return figures


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def delivery_metrics(instance: dg.DagsterInstance, catalog: Catalog, settings: PlatformSettings, since: float,
                     now: float) -> dict[str, list[DeliveryFigures]]:
    """Figures per deliverable, per kind and per team (each group in time order of its events)."""
    events, changes = prod_events(instance, catalog, settings, since)
    days = max((now - since) / DAY_S, 1e-9)
    groups: dict[str, dict[str, list[ProdEvent]]] = {"deliverable": defaultdict(list), "kind": defaultdict(list),
                                                     "team": defaultdict(list)}
    for deliverable in catalog:  # every deliverable has a row, delivered or not
        for scope in (("deliverable", deliverable.name), ("kind", deliverable.kind),
                      ("team", deliverable.spec.owner)):
            groups[scope[0]].setdefault(scope[1], [])
    for event in events:
        deliverable = catalog.deliverables[event.deliverable]
        for group, scope in (("deliverable", event.deliverable), ("kind", deliverable.kind),
                             ("team", deliverable.spec.owner)):
            groups[group][scope].append(event)
    return {group: [figures_of(scope, scoped, changes, days) for scope, scoped in sorted(by_scope.items())]
            for group, by_scope in groups.items()}


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", DAY_S), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


COLUMNS = ("DEPLOYS", "PER DAY", "LEAD TIME", "CHANGE FAILURE", "TIME TO RESTORE", "NOT STARTED")


def table_rows(figures: list[DeliveryFigures]) -> list[list[str]]:
    return [[f.scope, str(f.deploys), f"{f.deploys_per_day:g}", format_duration(f.lead_time_s),
             "-" if f.change_failure_rate is None else f"{f.change_failure_rate:.0%}",
             format_duration(f.time_to_restore_s), str(f.failed_attempts)] for f in figures]


def format_table(figures: list[DeliveryFigures], heading: str) -> str:
    lines = [[heading.upper(), *COLUMNS], *table_rows(figures)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def markdown_table(figures: list[DeliveryFigures], heading: str) -> str:
    lines = [[heading, *(c.lower() for c in COLUMNS)], *table_rows(figures)]
    return "\n".join(["| " + " | ".join(lines[0]) + " |", "|" + "---|" * len(lines[0]),
                      *("| " + " | ".join(line) + " |" for line in lines[1:])])
