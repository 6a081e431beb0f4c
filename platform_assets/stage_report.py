"""What one stage's run did, in a few lines a person reads at the terminal.

Everything comes from the run's events in the instance (the record it wrote, its check results,
its step failure), so the summary says what the UI and `deliver history` say: the gates with
their reasons, the version an environment serves, why a deploy changed nothing (the log lines
of a version that did not start, the health endpoint's answer) and what fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from platform_assets.records import KEPT

MAX_LINES = 12  # of one reason, so a stage's summary stays on one screen


@dataclass(frozen=True)
class StageReport:
    asset: str
    run_id: str
    success: bool
    headline: str
    details: list[str] = field(default_factory=list)

    def text(self) -> str:
        state = "ok" if self.success else "FAILED"
        lines = [f"{self.asset}  {state}  {self.headline}", *(f"    {line}" for line in self.details)]
        return "\n".join(lines)


@dataclass
class _RunEvents:
    record: dict[str, Any] | None = None
    checks: list[tuple[str, bool, str]] = field(default_factory=list)  # (name, passed, description)
    failure: str | None = None
    unexpected: bool = False  # the step raised something other than a platform refusal or a gate


def stage_report(instance: dg.DagsterInstance, run_id: str, key: dg.AssetKey, success: bool) -> StageReport:
    events = _read(instance, run_id, key)
    asset, stage = key.to_user_string(), key.path[-1]
    if stage == "build":
        headline, details = _build(events)
    elif stage == "evaluate":
        headline, details = _evaluate(events)
    else:
        headline, details = _deploy(events, stage)
    if events.unexpected:
        details.append(f"the step failed unexpectedly; the full error is in run {run_id} (or: deliver run --verbose)")
    return StageReport(asset, run_id, success, headline, details)


def _read(instance: dg.DagsterInstance, run_id: str, key: dg.AssetKey) -> _RunEvents:
    found = _RunEvents()
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and event.asset_key == key:
            found.record = {k: v.value for k, v in entry.asset_materialization.metadata.items()}
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if evaluation.asset_key == key:
                found.checks.append((evaluation.check_name, evaluation.passed, evaluation.description or ""))
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            data = event.step_failure_data
            if data.user_failure_data is not None:
                found.failure = data.user_failure_data.description
            elif data.error is not None and data.error.cls_name != "DagsterAssetCheckFailedError":
                found.failure = f"{data.error.cls_name}: {data.error.message.strip()}"
                found.unexpected = True
    return found


def _build(events: _RunEvents) -> tuple[str, list[str]]:
    if events.record is None:
        return "not built", _lines(events.failure)
    record = events.record
    return f"version {record['version']}" + (" (built before: reused)" if record.get("reused") else ""), []


def _evaluate(events: _RunEvents) -> tuple[str, list[str]]:
    if events.record is None:
        return "not evaluated", _lines(events.failure)
    record = events.record
    failed = record.get("failed_gates") or []
    headline = f"version {record['version']}: " + (f"gates failed: {', '.join(failed)}" if failed else "gates passed")
    ordered = sorted(events.checks, key=lambda check: check[1])  # failures first
    return headline, [line for name, passed, why in ordered for line in _lines(f"{'pass' if passed else 'FAIL'} "
                                                                                f"{name}: {why}")]


def _deploy(events: _RunEvents, env: str) -> tuple[str, list[str]]:
    record, checks = events.record, {name: (passed, why) for name, passed, why in events.checks}
    if record is None:
        return f"nothing deployed to {env}", _lines(events.failure)
    serving = f"{env} serves {record['version']}, " + ("healthy" if record.get("healthy") else "NOT healthy")
    url = record.get("url") or record.get("current_url")
    where = [f"at {url}"] if url and url != "none" else []
    if record.get(KEPT):
        return f"nothing changed: {serving}", [*_lines(events.failure or record.get("reason")), *where]
    if events.failure:  # deployed, then found unhealthy: rolled back, or kept with its failed check
        return serving, [*_lines(events.failure), *where]
    healthy = checks.get("healthy")
    return serving, [*where, *([f"healthy: {healthy[1]}"] if healthy and not healthy[0] else [])]


def _lines(text: Any) -> list[str]:
    """A reason as lines, at most MAX_LINES (the first and the last ones)."""
    lines = [line.rstrip() for line in str(text or "").splitlines() if line.strip()]
    if len(lines) <= MAX_LINES:
        return lines
    return [*lines[:2], f"... ({len(lines) - MAX_LINES} lines left out)", *lines[-(MAX_LINES - 3):]]
