"""Liveness and supervision: one sensor, `platform_runtime`, watches every deployment of the catalog.

Each tick (automation.sensor_interval_s) it looks at every (deliverable, environment) that serves:
local processes by pid and health endpoint (in parallel), Kubernetes Deployments by readiness,
one list call per namespace; GitOps environments are left to Argo CD or Flux. The decisions are
platform_assets/supervision.py's: a dead local process is restarted with bounded retries and
backoff, and the gateway of a local environment is started again if it died. What changed is
recorded as `live` check evaluations on `<name>/<env>` (SensorResult asset events: the daemon
writes them), and every `runtime.record_every_s` the state again with the request figures of the
served version (`/-/metrics`, scraped with serving_metrics; the previous snapshot is kept in the
cursor, the figures are the difference). A tick over unchanged, healthy deployments records
nothing and reads no event log; only a cursor-less first tick reads the latest `live` evaluations
(one query), so a daemon restart does not record every state again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import dagster as dg

from platform_assets.catalog import Catalog
from platform_assets.liveness import DOWN, UP, Live, latest_live, served
from platform_assets.records import env_key, latest_records
from platform_assets.resources_config import deploy_target
from platform_assets.runtime_probes import observe, scrape_all
from platform_assets.serving_metrics import Snapshot, figures
from platform_assets.settings import Environment, PlatformSettings
from platform_assets.supervision import Decision, Memory, Seen, supervise
from resources.deploy_target import DeployFailed
from sensors.catalog_sensor import catalog_watch

Log = Callable[[str], None]


def runtime_tick(instance: dg.DagsterInstance, catalog: Catalog, settings: PlatformSettings,
                 cursor_text: str | None, log: Log, now: float | None = None,
                 ) -> tuple[list[dg.AssetCheckEvaluation], str]:
    """One tick as plain logic: the `live` evaluations to record and the next cursor."""
    now = time.time() if now is None else now
    memory = {key: Memory(**value) for key, value in json.loads(cursor_text or "{}").items()}
    teams = served(catalog)
    prior = latest_live(instance, [(n, e) for n in teams for e in settings.environment_names]) \
        if cursor_text is None else {}
    decisions: dict[tuple[str, str], Decision] = {}
    urls: dict[tuple[str, str], str] = {}
    for env in settings.environments:
        target = deploy_target(settings, env)
        seen = observe(env, target, teams, settings.runtime.probe_timeout_s, now)
        if env.target == "kubernetes":
            seen.update(_gone(instance, env, teams, seen))
        if env.target == "local" and seen:
            _keep_gateway(target, env, log)
        for name, what in seen.items():
            key = (name, env.name)
            before = memory.get(f"{name}/{env.name}") or _seeded(prior.get(key), what, now)
            decisions[key] = _decide(target, name, env, what, before, settings, now, log)
            if what.metrics_url:
                urls[key] = what.metrics_url
    events = _with_figures(decisions, urls, settings.runtime.probe_timeout_s)
    cursor = {f"{name}/{env}": d.memory.dump() for (name, env), d in decisions.items()}
    return events, json.dumps(cursor, separators=(",", ":"), sort_keys=True)


def _decide(target: Any, name: str, env: Environment, seen: Seen, before: Memory | None,
            settings: PlatformSettings, now: float, log: Log) -> Decision:
    """Supervise one deployment and restart it if that is the decision; a restart that cannot
    happen now (a deploy holds the slot or replaced the process since the probe) records nothing
    and is left to the next tick, one that fails is `down`."""
    kept = Memory(**before.dump()) if before else None
    tail = target.log_tail(name) if seen.can_restart and not seen.running else ""
    decision = supervise(seen, before, settings.runtime, now, tail)
    if not decision.restart:
        return decision
    try:
        restarted = target.restart(name, seen.pid)
    except (OSError, DeployFailed) as exc:
        down = Live(DOWN, now, seen.version, seen.restarts, f"{seen.detail}; the restart failed: {exc}")
        return replace(decision, state=DOWN, records=[down], memory=replace(decision.memory, s=DOWN, t=now, rec=now))
    if restarted is None:
        return replace(decision, restart=False, records=[], memory=kept or Memory(d=seen.deployment))
    log(f"restarted {name} {seen.version} in {env.name} (pid {restarted['pid']}): {seen.detail}")
    return decision


def _seeded(last: Live | None, seen: Seen, now: float) -> Memory | None:
    """Memory from the newest recorded `live` evaluation, so an unchanged state is not recorded again."""
    if last is None or last.version != seen.version:
        return None
    return Memory(d=seen.deployment, s=last.state, t=last.since, rec=now)


def _gone(instance: dg.DagsterInstance, env: Environment, teams: dict[str, str],
          seen: dict[str, Seen]) -> dict[str, Seen]:
    """Deliverables recorded as deployed in a Kubernetes environment whose Deployment is missing
    (one batched query, only for those)."""
    missing = [name for name in teams if name not in seen]
    records = latest_records(instance, [env_key(name, env.name) for name in missing]) if missing else {}
    return {name: Seen(deployment="gone", version=record.version, running=False, healthy=False,
                       detail=f"Deployment {name} is not in {env.namespace_for(teams[name])}")
            for name in missing if (record := records.get(env_key(name, env.name))) is not None}


def _keep_gateway(target: Any, env: Environment, log: Log) -> None:
    """The gateway of a local environment runs whenever something is deployed there."""
    gateway = target.gateway()
    if gateway.running():
        return
    try:
        gateway.ensure()
        log(f"started the gateway of {env.name} again on port {gateway.port()}")
    except DeployFailed as exc:
        log(f"the gateway of {env.name} does not start: {exc}")


def _with_figures(decisions: dict[tuple[str, str], Decision], urls: dict[tuple[str, str], str],
                  timeout_s: float) -> list[dg.AssetCheckEvaluation]:
    """The evaluations to record; an `up` one carries the figures since the previous snapshot
    (scraped only for what is recorded now)."""
    due = {key: urls[key] for key, d in decisions.items() if key in urls and any(r.state == UP for r in d.records)}
    snapshots = scrape_all({f"{n}/{e}": url for (n, e), url in due.items()}, timeout_s)
    events = []
    for (name, env), decision in decisions.items():
        snapshot = snapshots.get(f"{name}/{env}")
        before = _snapshot(decision.memory.snap)
        for record in decision.records:
            if record.state == UP and snapshot is not None and before is not None:
                record = replace(record, figures=figures(before, snapshot).as_metadata())
            events.append(record.evaluation(name, env))
        if f"{name}/{env}" in snapshots:
            decision.memory.snap = _snapshot_list(snapshot)
    return events


def _snapshot(values: list[Any] | None) -> Snapshot | None:
    if not values:
        return None
    at, requests, errors, buckets, in_flight = values
    return Snapshot(at, requests, errors, tuple((float(b), float(c)) for b, c in buckets), in_flight)


def _snapshot_list(snapshot: Snapshot | None) -> list[Any] | None:
    if snapshot is None:
        return None
    return [snapshot.at, snapshot.requests, snapshot.errors, [list(b) for b in snapshot.buckets], snapshot.in_flight]


def runtime_sensor(catalog: Catalog, settings: PlatformSettings) -> dg.SensorDefinition:
    return catalog_watch(
        "platform_runtime",
        "Probes every deployment, restarts dead local processes (bounded, with backoff) and records the `live` "
        "check on <name>/<env>: up, restarting, down or stopped, restarts, request rate, errors and latency.",
        settings.automation.sensor_interval_s,
        lambda context: runtime_tick(context.instance, catalog, settings, context.cursor, context.log.info))
