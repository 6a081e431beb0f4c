"""Asset keys of the pipeline and what the event log records about a deliverable.

A record is a materialization that a stage step wrote, carrying the `version` it acted on. Events
reported outside a run (the UI's "Report materialization", `report_runless_asset_event`) are
never records: they cannot say what was built, evaluated or deployed, so they can neither erase a
gate baseline nor stand in for a healthy deploy. The stages, the sensors, `deliver status` and
`deliver history` all read the event log through these functions.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from platform_assets.handlers.base import Deployed

HEALTHY = "healthy"
LAST_DEPLOY = "last_deploy"  # non-blocking check: did the last deploy of this environment take effect
KEPT = "kept"  # on a record that restates what still serves after a deploy that changed nothing
LAST_UPDATED = "dagster/last_updated_timestamp"  # what freshness checks read instead of the record's time
ROLLBACK_TAG = "platform/rollback_to"
TRIGGER_TAG = "platform/trigger"
SCAN_LIMIT = 200  # how far back a read looks for a record (of a version) before giving up


def build_key(name: str) -> dg.AssetKey:
    return dg.AssetKey([name, "build"])


def evaluate_key(name: str) -> dg.AssetKey:
    return dg.AssetKey([name, "evaluate"])


def env_key(name: str, env: str) -> dg.AssetKey:
    return dg.AssetKey([name, env])


def deploy_check_keys(name: str, env: str) -> list[dg.AssetCheckKey]:
    """The checks a deploy step itself yields. Deploy runs name them, so they leave out the checks
    other steps run on the same asset (freshness), which a failed deploy would leave unexecuted."""
    return [dg.AssetCheckKey(env_key(name, env), check) for check in (HEALTHY, LAST_DEPLOY)]


def target_resource_key(env: str) -> str:
    return f"deploy_target_{env.replace('-', '_')}"


def recorded(event: dg.EventLogEntry | None) -> Deployed | None:
    """The version (and metadata) a stage step recorded; None for anything else."""
    if event is None or event.asset_materialization is None or not event.run_id:
        return None
    metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    if "version" not in metadata:
        return None
    return Deployed(version=str(metadata["version"]), metadata=metadata, recorded_at=event.timestamp)


def observed(record: dg.EventLogRecord) -> dict[str, Any]:
    """The plain metadata of an observation record ({} for any other event)."""
    observation = record.asset_observation
    return {k: v.value for k, v in observation.metadata.items()} if observation else {}


def _records(instance: dg.DagsterInstance, key: dg.AssetKey, limit: int) -> list[Deployed]:
    found = (recorded(r.event_log_entry) for r in instance.fetch_materializations(key, limit=limit).records)
    return [d for d in found if d is not None]


def latest(instance: dg.DagsterInstance, key: dg.AssetKey) -> Deployed | None:
    """The newest record of `key`. One query when the newest event is a record, as it is unless
    someone reported an event by hand; then the scan goes further back."""
    newest = instance.fetch_materializations(key, limit=1).records
    if not newest:
        return None
    return recorded(newest[0].event_log_entry) or next(iter(_records(instance, key, SCAN_LIMIT)), None)


def latest_records(instance: dg.DagsterInstance, keys: list[dg.AssetKey]) -> dict[dg.AssetKey, Deployed | None]:
    """`latest` for many keys in one batched query (plus one more per key whose newest event is
    not a record)."""
    events = instance.get_latest_materialization_events(keys)
    found: dict[dg.AssetKey, Deployed | None] = {}
    for key in keys:
        record = recorded(events.get(key))
        found[key] = record if record is not None or key not in events else latest(instance, key)
    return found


def deploy_history(instance: dg.DagsterInstance, name: str, env: str, limit: int = SCAN_LIMIT) -> list[Deployed]:
    """Deploy records of `name` in `env`, newest first."""
    return _records(instance, env_key(name, env), limit)


def evaluation_of(instance: dg.DagsterInstance, name: str, version: str) -> Deployed | None:
    """The newest evaluation record of `version` (its gates), wherever it sits in the history."""
    return next((d for d in _records(instance, evaluate_key(name), SCAN_LIMIT) if d.version == version), None)


def observations(instance: dg.DagsterInstance, key: dg.AssetKey, event: str,
                 limit: int = SCAN_LIMIT) -> list[tuple[dict[str, Any], float]]:
    """Observations of one `event` kind on `key` with their timestamps, newest first."""
    records = instance.fetch_observations(key, limit=limit).records
    return [(observed(r), r.timestamp) for r in records if observed(r).get("event") == event]
