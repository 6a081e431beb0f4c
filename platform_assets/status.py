"""What runs where: per deliverable and environment the version, whether it is live (or, for kinds
that run on a schedule, how their last run went) and its stable address, read from the Dagster
event log in batched queries (the latest records, the latest `live` evaluations, the latest
`status_check` evaluations), plus the lineage from the catalog."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from platform_assets.catalog import Catalog
from platform_assets.kinds.registry import get_handler
from platform_assets.liveness import STOPPED, latest_live
from platform_assets.records import build_key, env_key, evaluate_key, latest_records, observed
from platform_assets.settings import PlatformSettings
from platform_assets.specs import Deliverable

NO_RUN = "deployed, no run yet"


@dataclass
class EnvironmentStatus:
    version: str | None = None
    live: str | None = None  # the latest `live` evaluation: up, restarting, down, stopped (None: not recorded)
    since: str | None = None
    restarts: int | None = None
    live_detail: str | None = None
    url: str | None = None  # the stable address (None once stopped)
    # Kinds that run on a schedule (batch jobs): the latest run there, from their handler's `status_check`.
    last_run: str | None = None


@dataclass
class DeliverableStatus:
    name: str
    kind: str
    owner: str
    versions: dict[str, str | None] = field(default_factory=dict)
    gates: str = "-"
    gate_failure: str | None = None  # the failing gates of the latest evaluation, with their reasons
    build_failure: str | None = None  # the newest build, when it failed: its version (if known) and why
    endpoint: str | None = None
    upstream: list[str] = field(default_factory=list)
    downstream: list[str] = field(default_factory=list)
    environments: dict[str, EnvironmentStatus] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def collect_status(instance: dg.DagsterInstance, catalog: Catalog, settings: PlatformSettings,
                   name: str | None = None) -> list[DeliverableStatus]:
    """Records only (an event reported by hand never shows as what an environment runs), for every
    deliverable or just `name`."""
    deliverables = [d for d in catalog if name in (None, d.name)]
    envs = settings.environment_names
    keys = [evaluate_key(d.name) for d in deliverables] + [env_key(d.name, e) for d in deliverables for e in envs]
    records = latest_records(instance, keys)
    failures = _build_failures(instance, [d.name for d in deliverables])
    live = latest_live(instance, [(d.name, e) for d in deliverables for e in envs])
    runs = _last_runs(instance, deliverables, envs)
    downstream: dict[str, list[str]] = {}
    for deliverable in catalog:
        for upstream in deliverable.spec.depends_on:
            downstream.setdefault(upstream, []).append(deliverable.name)
    rows = []
    for deliverable in deliverables:
        keeps_runs = get_handler(deliverable.kind).status_check is not None
        row = DeliverableStatus(deliverable.name, deliverable.kind, deliverable.spec.owner,
                                upstream=list(deliverable.spec.depends_on),
                                downstream=sorted(downstream.get(deliverable.name, [])))
        for env in envs:
            deployed, state = records[env_key(deliverable.name, env)], live.get((deliverable.name, env))
            status = EnvironmentStatus(version=deployed.version if deployed else None)
            if state is not None:
                status.live, status.restarts, status.live_detail = state.state, state.restarts, state.detail or None
                status.since = datetime.fromtimestamp(state.since, UTC).isoformat(timespec="seconds")
            if deployed and status.live != STOPPED:
                status.url = _endpoint(deployed.metadata)
                row.endpoint = status.url or row.endpoint
            status.last_run = runs.get((deliverable.name, env), NO_RUN if deployed and keeps_runs else None)
            row.versions[env] = status.version
            row.environments[env] = status
        evaluated = records[evaluate_key(deliverable.name)]
        if evaluated:
            failed = evaluated.metadata.get("failed_gates") or []
            row.gates = f"{evaluated.version} {'passed' if not failed else 'failed: ' + ', '.join(failed)}"
            row.gate_failure = "; ".join(
                f"{gate}: {str(evaluated.metadata.get(f'gate/{gate}', '')).removeprefix('FAIL: ')}"
                for gate in failed) or None
        row.build_failure = failures.get(deliverable.name)
        rows.append(row)
    return rows


def _last_runs(instance: dg.DagsterInstance, deliverables: list[Deliverable],
               envs: list[str]) -> dict[tuple[str, str], str]:
    """The newest evaluation of each handler's `status_check`, per (deliverable, environment), in one query."""
    keys = {}
    for deliverable in deliverables:
        check = get_handler(deliverable.kind).status_check
        if check:
            keys.update({dg.AssetCheckKey(env_key(deliverable.name, env), check): (deliverable.name, env)
                         for env in envs})
    found = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(keys)) if keys else {}
    runs = {}
    for key, record in found.items():
        evaluation = record.event.asset_check_evaluation if record.event else None
        if evaluation is not None:
            when = datetime.fromtimestamp(record.create_timestamp, UTC).isoformat(timespec="seconds")
            outcome = "ok" if evaluation.passed else "FAILED"
            runs[keys[key]] = f"last run {outcome} at {when}: {evaluation.description or ''}".rstrip(": ")
    return runs


def _build_failures(instance: dg.DagsterInstance, names: list[str]) -> dict[str, str]:
    """Per deliverable whose newest build event is a failure (newer than its last build), what
    failed. The builds' latest materializations come in one batched read; SQL event storage keeps
    no latest observation per asset, so that is one indexed read per deliverable."""
    keys = [build_key(name) for name in names]
    built = {record.asset_entry.asset_key: record.asset_entry.last_materialization_record
             for record in instance.get_asset_records(keys)}
    found = {}
    for name, key in zip(names, keys, strict=True):
        newest = instance.fetch_observations(key, limit=1).records
        if not newest or (built.get(key) is not None and built[key].storage_id > newest[0].storage_id):
            continue
        metadata = observed(newest[0])
        if metadata.get("event") == "build_failed":
            reason = str(metadata.get("reason", "")).splitlines()
            found[name] = f"{metadata.get('attempted_version', '-')}: {reason[0] if reason else 'no reason recorded'}"
    return found


def _endpoint(metadata: dict[str, Any]) -> str | None:
    """Where consumers find a deployment: a URL for services and notebook reports, published tables
    for datasets, the table a batch job writes."""
    if metadata.get("url"):
        return str(metadata["url"])
    if metadata.get("output"):
        return str(metadata["output"])
    tables = metadata.get("tables")
    return ", ".join(tables) if isinstance(tables, list) and tables else None


def format_table(rows: list[DeliverableStatus], environments: list[str]) -> str:
    """One block per deliverable: who owns it and its lineage, its gates, one line per environment."""
    blocks = []
    width = max(len(env) for env in environments)
    for row in rows:
        lines = [f"{row.name}  ({row.kind}, owner {row.owner})  upstream: {', '.join(row.upstream) or '-'}  "
                 f"downstream: {', '.join(row.downstream) or '-'}",
                 f"  {'gates'.ljust(width)}  {row.gates}" + (f"  ({row.gate_failure})" if row.gate_failure else "")]
        if row.build_failure:
            lines.insert(1, f"  {'build'.ljust(width)}  FAILED {row.build_failure}")
        for env in environments:
            status = row.environments[env]
            lines.append(f"  {env.ljust(width)}  {(status.version or '-'):<14} {_live(status):<42} "
                         f"{status.url or '-'}".rstrip())
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _live(status: EnvironmentStatus) -> str:
    if status.last_run is not None:
        return status.last_run
    if status.live is None:
        return "-" if status.version is None else "deployed (not probed yet)"
    restarts = f", {status.restarts} restart(s)" if status.restarts else ""
    return f"{status.live} since {status.since}{restarts}"
