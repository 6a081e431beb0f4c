"""What people do to a delivery besides building it: approve, promote now, roll back, read history.

Every action is an event on the deliverable's assets in the Dagster event log (an observation for
an approval, a run of the environment asset for a promotion or rollback), so the UI, `deliver
history` and the promotion sensor read one audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from platform_assets.catalog import Catalog
from platform_assets.errors import ActionRefused
from platform_assets.settings import PlatformSettings
from platform_assets.stages import (
    approval_metadata,
    build_key,
    deploy_history,
    env_key,
    evaluate_key,
    latest,
    observed,
    recorded,
)


def deliverable_named(catalog: Catalog, name: str) -> Any:
    if name not in catalog.deliverables:
        raise ActionRefused(f"no deliverable '{name}' in {catalog.root}; known: {', '.join(catalog.deliverables)}")
    return catalog.deliverables[name]


def check_environment(settings: PlatformSettings, env: str) -> None:
    if env not in settings.environment_names:
        raise ActionRefused(f"unknown environment '{env}'; valid: {', '.join(settings.environment_names)}")


def approve(instance: dg.DagsterInstance, catalog: Catalog, settings: PlatformSettings, name: str, version: str,
            env: str, user: str) -> dict[str, Any]:
    """Record `user`'s approval of `version` for `env` on the environment asset; refused otherwise."""
    deliverable = deliverable_named(catalog, name)
    check_environment(settings, env)
    policy = deliverable.spec.policy(env)
    if policy.mode != "manual":
        raise ActionRefused(f"{name}: promotion.{env} is {policy.mode}; versions reach {env} without approval")
    if user not in policy.approvers:
        raise ActionRefused(f"{user} is not an approver of {name} for {env} (approvers: "
                            f"{', '.join(policy.approvers)}; set in {deliverable.path}, "
                            f"field promotion.{env}.approvers)")
    previous = settings.previous_environment(env)
    source = latest(instance, env_key(name, previous) if previous else evaluate_key(name))
    if source is None or source.version != version:
        where = previous or "evaluate"
        raise ActionRefused(f"{name} {version} is not what {where} holds ({source.version if source else 'nothing'});"
                            " approve the version that is there")
    metadata = {**approval_metadata(version, user, env), "approved_at": datetime.now(UTC).isoformat()}
    instance.report_runless_asset_event(dg.AssetObservation(asset_key=env_key(name, env), metadata=metadata))
    return metadata


def run_deploy_now(instance: dg.DagsterInstance, defs: dg.Definitions, name: str, env: str,
                   tags: dict[str, str]) -> dg.ExecuteInProcessResult:
    """Run the environment asset in this process (gates and approvals are checked by the step)."""
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=instance, asset_selection=[env_key(name, env)], tags=tags,
                                  raise_on_error=False)


def rollback_target(instance: dg.DagsterInstance, name: str, env: str, to: str | None) -> str:
    """The version to go back to: `to`, or the last healthy one before what runs now."""
    current = latest(instance, env_key(name, env))
    healthy = [d.version for d in deploy_history(instance, name, env) if d.metadata.get("healthy") is True]
    candidates = [v for v in healthy if current is None or v != current.version]
    if to is not None:
        if to not in healthy:
            raise ActionRefused(f"{name} {to} was never healthy in {env}; "
                                f"healthy there: {', '.join(healthy) or 'none'}")
        return to
    if not candidates:
        raise ActionRefused(f"{name} has no earlier healthy version in {env} to roll back to")
    return candidates[0]


@dataclass(frozen=True)
class HistoryEntry:
    timestamp: float
    asset: str
    event: str
    version: str
    detail: str

    def line(self) -> str:
        when = datetime.fromtimestamp(self.timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")
        return f"{when}  {self.asset:<22} {self.event:<14} {self.version:<14} {self.detail}"


def history(instance: dg.DagsterInstance, settings: PlatformSettings, name: str,
            limit: int = 100) -> list[HistoryEntry]:
    """Builds, gate results, deploys, failed deploys, approvals and rollbacks, newest first."""
    keys = [build_key(name), evaluate_key(name), *(env_key(name, env) for env in settings.environment_names)]
    entries = []
    for key in keys:
        stage = key.path[-1]
        for record in instance.fetch_materializations(key, limit=limit).records:
            entry = _materialization_entry(stage, record)
            if entry:
                entries.append(entry)
        for record in instance.fetch_observations(key, limit=limit).records:
            metadata = observed(record)
            event = str(metadata.get("event", "observation"))
            version = str(metadata.get("version") or metadata.get("attempted_version") or "-")
            detail = (f"by {metadata['approved_by']}" if event == "approval"
                      else str(metadata.get("reason", ""))[:160])
            entries.append(HistoryEntry(record.timestamp, key.to_user_string(), event, version, detail))
    return sorted(entries, key=lambda e: e.timestamp, reverse=True)[:limit]


def _materialization_entry(stage: str, record: Any) -> HistoryEntry | None:
    deployed = recorded(record.event_log_entry)
    if deployed is None:
        return None
    metadata, asset = deployed.metadata, f"{record.asset_key.to_user_string()}"
    if stage == "build":
        return HistoryEntry(record.timestamp, asset, "build", deployed.version,
                            "reused" if metadata.get("reused") else "built")
    if stage == "evaluate":
        failed = metadata.get("failed_gates") or []
        detail = "gates passed" if metadata.get("gates_passed") else f"gates failed: {', '.join(failed)}"
        return HistoryEntry(record.timestamp, asset, "evaluate", deployed.version, detail)
    event = "rollback" if metadata.get("rollback_from") is not None else "deploy"
    detail = "healthy" if metadata.get("healthy") else "UNHEALTHY"
    if event == "rollback":
        detail += f", from {metadata['rollback_from']}"
    trigger = metadata.get("trigger")
    return HistoryEntry(record.timestamp, asset, event, deployed.version, detail + (f" ({trigger})" if trigger else ""))

