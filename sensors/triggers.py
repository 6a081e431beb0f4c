"""What starts a delivery without a person: source changes, upstream publications, schedules,
model versions registered outside the platform, and models whose served inputs drifted.

Each trigger is one sensor over the whole catalog (never one per deliverable) and requests the
same selection, `<name>/build` and `<name>/evaluate`; the promotion sensor (sensors/promotion.py)
deploys a version whose gates passed to the first environment, and onwards. Run keys name the
cause, so a repeated tick or a daemon restart never launches the same delivery twice. The first tick of a
sensor records a baseline and requests nothing: starting the daemon does not rebuild the world.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from platform_assets.catalog import Catalog
from platform_assets.fingerprint import source_digest, source_files
from platform_assets.kinds.model.drift_check import DRIFT_CHECK
from platform_assets.kinds.registry import get_handler
from platform_assets.records import TRIGGER_TAG, build_key, env_key, evaluate_key, latest_records
from platform_assets.settings import PlatformSettings
from platform_assets.specs import Deliverable
from resources.mlflow_registry import MlflowRegistry
from sensors.catalog_sensor import catalog_sensor


def delivery_request(deliverable: str, run_key: str, trigger: str, tags: dict[str, str] | None = None) -> dg.RunRequest:
    """Build and evaluate; the promotion sensor deploys a version whose gates passed. No environment
    is planned in this run, so a failing gate cannot make one look failed while it serves."""
    return dg.RunRequest(
        run_key=run_key,
        asset_selection=[build_key(deliverable), evaluate_key(deliverable)],
        tags={TRIGGER_TAG: trigger, "platform/deliverable": deliverable, **(tags or {})},
    )


def stat_signature(deliverable: Deliverable) -> str:
    """Names, sizes and mtimes of the source files: cheap to read, changes whenever a file does."""
    digest = hashlib.sha256()
    for path in source_files(deliverable.folder):
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


def source_tick(catalog: Catalog, settings: PlatformSettings,
                cursor_text: str | None) -> tuple[list[dg.RunRequest], str]:
    """Deliverables whose source digest changed since the last tick (files are re-read only when
    their names, sizes or mtimes changed)."""
    seen: dict[str, list[str]] = json.loads(cursor_text) if cursor_text else {}
    requests, now = [], {}
    for deliverable in catalog:
        if not get_handler(deliverable.kind).follows_sources:
            continue
        signature = stat_signature(deliverable)
        before = seen.get(deliverable.name)
        if before and before[0] == signature:
            now[deliverable.name] = before
            continue
        digest = source_digest(deliverable.folder)
        now[deliverable.name] = [signature, digest]
        if before and before[1] != digest:
            requests.append(delivery_request(deliverable.name, f"source:{deliverable.name}:{digest}",
                                             "source-change", {"platform/source_digest": digest}))
    return requests, json.dumps(now, sort_keys=True)


def upstream_tick(instance: dg.DagsterInstance, catalog: Catalog, settings: PlatformSettings,
                  cursor_text: str | None) -> tuple[list[dg.RunRequest], str]:
    """A new version in an upstream's last environment redelivers its downstream deliverables."""
    last = settings.last_environment
    downstream: dict[str, list[str]] = {}
    for deliverable in catalog:
        for upstream in deliverable.spec.depends_on:
            downstream.setdefault(upstream, []).append(deliverable.name)
    published_keys = {name: env_key(name, last) for name in downstream}
    records = latest_records(instance, list(published_keys.values()))
    seen: dict[str, str] = json.loads(cursor_text) if cursor_text is not None else {}
    now, requests = {}, []
    for upstream, key in published_keys.items():
        published = records[key]
        if published is None or published.metadata.get("healthy") is False:
            if upstream in seen:
                now[upstream] = seen[upstream]
            continue
        now[upstream] = published.version
        if cursor_text is None or seen.get(upstream) == published.version:
            continue
        for name in downstream[upstream]:
            requests.append(delivery_request(
                name, f"upstream:{name}:{upstream}:{published.version}", "upstream-published",
                {"platform/upstream": f"{upstream}@{published.version}"}))
    return requests, json.dumps(now, sort_keys=True)


def schedule_tick(catalog: Catalog, cursor_text: str | None,
                  now: datetime | None = None) -> tuple[list[dg.RunRequest], str]:
    """Deliverables whose `schedule:` (cron, UTC) came due since the previous evaluation; missed
    times collapse into the latest one."""
    from croniter import croniter

    now = now or datetime.now(UTC)
    since = datetime.fromtimestamp(float(cursor_text), UTC) if cursor_text else now
    requests = []
    for deliverable in catalog:
        cron = deliverable.spec.schedule
        if not cron:
            continue
        due = croniter(cron, now + timedelta(seconds=1)).get_prev(datetime)  # `now` itself counts as due
        if due > since:
            when = due.strftime("%Y-%m-%dT%H:%M")
            requests.append(delivery_request(deliverable.name, f"schedule:{deliverable.name}:{when}",
                                             "schedule", {"platform/scheduled_for": when}))
    return requests, str(now.timestamp())


def drift_tick(instance: dg.DagsterInstance, models: list[str], settings: PlatformSettings,
               cursor_text: str | None) -> tuple[list[dg.RunRequest], str]:
    """Models (`on_drift: retrain`) whose latest `drift` check failed on drifted features: one rebuild
    per served version that drifted, in whichever environment (the latest check of each, one query)."""
    keys = [dg.AssetCheckKey(env_key(name, env), DRIFT_CHECK) for name in models for env in settings.environment_names]
    checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    requested: dict[str, str] = json.loads(cursor_text) if cursor_text else {}
    requests = []
    for key in keys:
        record = checks.get(key)
        evaluation = record.event.asset_check_evaluation if record and record.event else None
        if evaluation is None or evaluation.passed:
            continue
        metadata = {k: v.value for k, v in evaluation.metadata.items()}
        name, env = key.asset_key.path
        run_key = f"drift:{name}:{metadata.get('version')}"
        if not metadata.get("drifted_features") or requested.get(name) == run_key:
            continue
        requested[name] = run_key
        drifted = f"{env}: {', '.join(metadata['drifted_features'])}"
        requests.append(delivery_request(name, run_key, "drift", {"platform/drift": drifted}))
    return requests, json.dumps(requested, sort_keys=True)


def trigger_sensors(catalog: Catalog, settings: PlatformSettings) -> list[dg.SensorDefinition]:
    """The source, upstream, schedule, model-registration and drift sensors (those the catalog has
    anything for)."""
    interval = settings.automation.sensor_interval_s

    def delivered(names: list[str]) -> dg.AssetSelection:
        return dg.AssetSelection.assets(*(k for n in names for k in (build_key(n), evaluate_key(n))))

    sources = [d.name for d in catalog if get_handler(d.kind).follows_sources]
    downstream = [d.name for d in catalog if d.spec.depends_on]
    scheduled = [d.name for d in catalog if d.spec.schedule]
    adopting = adopting_deliverables(catalog)
    retrained = [d.name for d in catalog if get_handler(d.kind).retrains_on_drift(d.spec)]
    sensors = []
    if sources:
        sensors.append(catalog_sensor(
            "platform_source_changes", "Delivers services, notebooks and models whose source changed.",
            settings.automation.source_interval_s, delivered(sources),
            lambda context: source_tick(catalog, settings, context.cursor)))
    if downstream:
        sensors.append(catalog_sensor(
            "platform_upstream_published", "Redelivers what depends on a deliverable when it publishes a new version.",
            interval, delivered(downstream),
            lambda context: upstream_tick(context.instance, catalog, settings, context.cursor)))
    if scheduled:
        sensors.append(catalog_sensor(
            "platform_schedules", "Rebuilds deliverables on the cron `schedule:` of their spec (UTC).",
            60, delivered(scheduled), lambda context: schedule_tick(catalog, context.cursor)))
    if adopting:
        sensors.append(registration_sensor(catalog, settings, interval, delivered(adopting)))
    if retrained:
        sensors.append(catalog_sensor(
            "platform_drift_retrain", "Rebuilds models (on_drift: retrain) whose served inputs drifted.",
            interval, delivered(retrained),
            lambda context: drift_tick(context.instance, retrained, settings, context.cursor)))
    return sensors


def adopting_deliverables(catalog: Catalog) -> list[str]:
    """Deliverables whose kind also delivers versions registered outside the platform."""
    return [d.name for d in catalog if get_handler(d.kind).adopts]


def registration_sensor(catalog: Catalog, settings: PlatformSettings, interval_s: int,
                        target: dg.AssetSelection) -> dg.SensorDefinition:
    """Like `catalog_sensor`, with the `mlflow` resource (Dagster injects resources by parameter)."""

    @dg.sensor(name="platform_model_registrations", minimum_interval_seconds=interval_s, target=target,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Evaluates model versions registered in MLflow outside the platform.")
    def model_registrations(context: dg.SensorEvaluationContext, mlflow: MlflowRegistry) -> dg.SensorResult:
        requests, cursor = registration_tick(mlflow, catalog, settings, context.cursor)
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return model_registrations


def registration_tick(registry: MlflowRegistry, catalog: Catalog, settings: PlatformSettings,
                      cursor_text: str | None) -> tuple[list[dg.RunRequest], str]:
    """Model versions registered in MLflow outside the platform (no platform run behind them) are
    adopted: evaluated against the champion and, if their gates pass, promoted to the first env."""
    seen: dict[str, int] = json.loads(cursor_text) if cursor_text is not None else {}
    client = registry.client()
    now, requests = dict(seen), []
    for name in adopting_deliverables(catalog):
        handler = get_handler(catalog.deliverables[name].kind)
        versions = client.search_model_versions(f"name = '{name}'")
        newest = max((int(v.version) for v in versions), default=0)
        now[name] = max(newest, seen.get(name, 0))
        if cursor_text is None:
            continue
        fresh = sorted((v for v in versions if int(v.version) > seen.get(name, 0)), key=lambda v: int(v.version))
        for version in fresh:
            if _built_by_platform(client, version):
                continue
            requests.append(delivery_request(name, f"registered:{name}:{version.version}", "model-registered",
                                             handler.adoption_tags(str(version.version))))
    return requests, json.dumps(now, sort_keys=True)


def _built_by_platform(client: Any, version: Any) -> bool:
    """Platform builds train in a run tagged `platform.deliverable`; anything else came from outside."""
    if not version.run_id:
        return False
    return "platform.deliverable" in client.get_run(version.run_id).data.tags
