"""What people do to a delivery besides building it: approve, promote now, roll back, read history.

Every action is a run (of the approval job, or of the environment asset for a promotion or a
rollback) that records an event on the deliverable's assets, so the UI, `deliver history` and the
promotion sensor read one audit trail, and the step that acts checks who asked and whether they
may (the CLI's own checks only give an early answer).
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from platform_assets.catalog import Catalog
from platform_assets.errors import ActionRefused
from platform_assets.identity.approvals import APPROVAL_EVENT, approval_metadata, check_approval
from platform_assets.identity.requester import OS_USER_TAG, registry, verified_requester
from platform_assets.identity.requests import SignedRequest
from platform_assets.identity.signatures import SignatureError, sign, signer_of, signing_key
from platform_assets.records import (
    KEPT,
    build_key,
    deploy_history,
    env_key,
    evaluate_key,
    latest,
    observed,
    recorded,
)
from platform_assets.settings import PlatformSettings, teams_path


def deliverable_named(catalog: Catalog, name: str) -> Any:
    if name not in catalog.deliverables:
        raise ActionRefused(f"no deliverable '{name}' in {catalog.root}; known: {', '.join(catalog.deliverables)}")
    return catalog.deliverables[name]


def check_environment(settings: PlatformSettings, env: str) -> None:
    if env not in settings.environment_names:
        raise ActionRefused(f"unknown environment '{env}'; valid: {', '.join(settings.environment_names)}")


def requester_tags(settings: PlatformSettings, action: str, name: str, env: str, version: str | None,
                   key: str | None = None) -> tuple[dict[str, str], str]:
    """Who asks, as run tags, and their name: a request signed with the person's SSH key (verified
    mode), or the OS user (the embedded default)."""
    if settings.identity_mode == "os-user":
        user = getpass.getuser()
        return {OS_USER_TAG: user}, user
    teams = registry(settings)
    if teams is None:
        raise ActionRefused(f"the teams registry {teams_path(settings)} cannot be read; run `deliver validate`")
    try:
        path = signing_key(key)
        signer = signer_of(path, teams)
        request = SignedRequest.new(action, name, env, version, signer)
        signed = replace(request, signature=sign(request.payload(), path))
    except SignatureError as exc:
        raise ActionRefused(str(exc)) from exc
    return signed.tags(), signer


def check_approver(catalog: Catalog, settings: PlatformSettings, name: str, env: str, approver: str) -> None:
    """Whether `approver` may approve `name` for `env` by its spec (the approval step checks again)."""
    deliverable = deliverable_named(catalog, name)
    check_environment(settings, env)
    policy = deliverable.spec.policy(env)
    if policy.mode != "manual":
        raise ActionRefused(f"{name}: promotion.{env} is {policy.mode}; versions reach {env} without approval")
    if approver not in policy.approvers:
        raise ActionRefused(f"{approver} is not an approver of {name} for {env} (approvers: "
                            f"{', '.join(policy.approvers)}; set in {deliverable.path}, "
                            f"field promotion.{env}.approvers)")


def record_approval(instance: dg.DagsterInstance, catalog: Catalog, settings: PlatformSettings, run_id: str,
                    tags: dict[str, str], name: str, version: str, env: str) -> dict[str, Any]:
    """What the approval step records, after verifying who asked and that they may; refused otherwise."""
    requester, why = verified_requester(settings, registry(settings), instance, run_id, tags)
    if requester is None or requester.automation:
        raise ActionRefused(f"an approval needs a verified person; this run has none ({why or 'a sensor'})")
    request = requester.request
    if request is not None and (request.action, request.deliverable, request.environment, request.version) != (
            "approve", name, env, version):
        raise ActionRefused(f"the signed request of {request.signer} is to {request.action} {request.deliverable} "
                            f"{request.version} in {request.environment}, not to approve {name} {version} in {env}")
    check_approver(catalog, settings, name, env, requester.member or requester.name)
    previous = settings.previous_environment(env)
    source = latest(instance, env_key(name, previous) if previous else evaluate_key(name))
    if source is None or source.version != version:
        where = previous or "evaluate"
        raise ActionRefused(f"{name} {version} is not what {where} holds ({source.version if source else 'nothing'});"
                            " approve the version that is there")
    return approval_metadata(settings, name, env, version, requester)


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


def history(instance: dg.DagsterInstance, catalog: Catalog, settings: PlatformSettings, name: str,
            limit: int = 100) -> list[HistoryEntry]:
    """Builds, gate results, deploys, failed deploys (and the `kept` record of what still served),
    approvals (and those that do not count) and rollbacks, newest first; events reported by hand
    are listed as ignored."""
    deliverable_named(catalog, name)
    teams = registry(settings)
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
            if event == APPROVAL_EVENT and stage in settings.environment_names:
                detail = _approval_detail(catalog, settings, teams, name, stage, metadata)
            else:
                detail = _one_line(str(metadata.get("reason", "")))
            entries.append(HistoryEntry(record.timestamp, key.to_user_string(), event, version, detail))
    return sorted(entries, key=lambda e: e.timestamp, reverse=True)[:limit]


def _one_line(reason: str, width: int = 240) -> str:
    """A multi-line reason as its first and last lines (what failed, and why): one history row."""
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    text = f"{lines[0]} ... {lines[-1]}" if len(lines) > 1 else "".join(lines)
    return text if len(text) <= width else text[: width - 3] + "..."


def _approval_detail(catalog: Catalog, settings: PlatformSettings, teams: Any, name: str, env: str,
                     metadata: dict[str, Any]) -> str:
    """`by alice` for an approval that counts; what was ignored and why otherwise."""
    check = check_approval(metadata, catalog.deliverables[name], env, settings, teams)
    return f"by {check.approver}" if check.valid else f"IGNORED ({check.reason}); claims {check.approver}"


def _materialization_entry(stage: str, record: Any) -> HistoryEntry | None:
    deployed = recorded(record.event_log_entry)
    asset = record.asset_key.to_user_string()
    if deployed is None:
        return HistoryEntry(record.timestamp, asset, "ignored", "-",
                            "a materialization reported outside a run (not a record of the platform)")
    metadata = deployed.metadata
    if stage == "build":
        return HistoryEntry(record.timestamp, asset, "build", deployed.version,
                            "reused" if metadata.get("reused") else "built")
    if stage == "evaluate":
        failed = metadata.get("failed_gates") or []
        reasons = "; ".join(f"{gate}: {str(metadata.get(f'gate/{gate}', '')).removeprefix('FAIL: ')}"
                            for gate in failed)
        detail = "gates passed" if metadata.get("gates_passed") else _one_line(f"gates failed: {reasons}", 400)
        return HistoryEntry(record.timestamp, asset, "evaluate", deployed.version, detail)
    detail = "healthy" if metadata.get("healthy") else "UNHEALTHY"
    if metadata.get(KEPT):  # a deploy that changed nothing: what still serves, and why
        attempted = metadata.get("attempted_version")
        why = _one_line(str(metadata.get("reason", "")))
        return HistoryEntry(record.timestamp, asset, "kept", deployed.version,
                            f"{detail}, still serving; {attempted or 'nothing'} not deployed: {why}")
    event = "rollback" if metadata.get("rollback_from") is not None else "deploy"
    if event == "rollback":
        detail += f", from {metadata['rollback_from']}"
    trigger = metadata.get("trigger")
    return HistoryEntry(record.timestamp, asset, event, deployed.version, detail + (f" ({trigger})" if trigger else ""))

