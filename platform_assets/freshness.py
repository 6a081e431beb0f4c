"""Is what the last environment serves still fresh? Non-blocking checks on `<name>/<last env>`.

- datasets: Dagster's last-update freshness check with the spec's `gates.freshness.max_age_hours`
  (one check definition per distinct age, so the catalog costs a few definitions). The dataset's
  deploy records the age of its data (`dagster/last_updated_timestamp`: the oldest of the newest
  `gates.freshness.column` values of its tables), so the check judges the data, not the publish.
- notebooks with a `schedule:`: `report_schedule` fails once a new report was due (the first
  schedule tick after the served one was published, or last rebuilt unchanged) and
  `notebook.schedule_grace` has passed.

One sensor (Dagster's, for freshness checks) runs them in batches: a passing check again once it
can have become stale (`dagster/fresh_until_timestamp`), a failing one after its asset changed.
Deploy runs leave these checks out (`records.deploy_check_keys`): a deploy that fails would
otherwise leave them "not executed" on the very record that says what still serves.
"""

# No `from __future__ import annotations` here: Dagster reads the check's `context` annotation as a type.
import warnings
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg

from platform_assets.catalog import Catalog
from platform_assets.delivery_metrics import format_duration
from platform_assets.kinds.registry import get_handler
from platform_assets.records import LAST_UPDATED, build_key, env_key, latest
from platform_assets.settings import PlatformSettings
from platform_assets.specs import Deliverable

REPORT_CHECK = "report_schedule"
FRESHNESS_SENSOR = "platform_freshness"
FRESH_UNTIL = "dagster/fresh_until_timestamp"  # what Dagster's freshness sensor reads to schedule a re-run
WARN = dg.AssetCheckSeverity.WARN


def freshness_checks(catalog: Catalog, settings: PlatformSettings) -> list[dg.AssetChecksDefinition]:
    """The freshness checks of the catalog's datasets and scheduled notebooks in the last environment."""
    last = settings.last_environment
    by_age: dict[float, list[dg.AssetKey]] = defaultdict(list)
    for deliverable in catalog:
        hours = get_handler(deliverable.kind).data_max_age_hours(deliverable.spec)
        if hours is not None:
            by_age[hours].append(env_key(deliverable.name, last))
    with warnings.catch_warnings():  # superseded by FreshnessPolicy, which reads only the materialization's
        warnings.simplefilter("ignore")  # time: a `kept` record or a reused old version would look fresh
        checks = [check for hours, keys in sorted(by_age.items()) for check in
                  dg.build_last_update_freshness_checks(assets=keys, lower_bound_delta=timedelta(hours=hours))]
    notebooks = [d for d in catalog if get_handler(d.kind).publishes_on_schedule(d.spec)]
    if notebooks:
        checks.append(report_schedule_check(notebooks, last))
    return checks


def freshness_sensor(checks: list[dg.AssetChecksDefinition], settings: PlatformSettings) -> dg.SensorDefinition:
    with warnings.catch_warnings():  # see freshness_checks
        warnings.simplefilter("ignore")
        return dg.build_sensor_for_freshness_checks(
            freshness_checks=checks, minimum_interval_seconds=settings.automation.sensor_interval_s,
            name=FRESHNESS_SENSOR, default_status=dg.DefaultSensorStatus.RUNNING)


def report_schedule_check(notebooks: list[Deliverable], env: str) -> dg.AssetChecksDefinition:
    """One check definition for every scheduled notebook (subsettable, so the sensor runs only those due)."""
    by_key = {env_key(d.name, env): d for d in notebooks}
    specs = [dg.AssetCheckSpec(REPORT_CHECK, asset=key, description=(
        f"the {env} report is refreshed on the schedule '{d.spec.schedule}' (UTC), at most "
        f"{format_duration(d.spec.notebook.schedule_grace)} late")) for key, d in by_key.items()]

    @dg.multi_asset_check(specs=specs, can_subset=True, name="platform_report_schedule")
    def _report_schedule(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        now = datetime.now(UTC)
        for check_key in context.selected_asset_check_keys:
            yield report_schedule_result(context.instance, by_key[check_key.asset_key], env, now)

    return _report_schedule


def report_schedule_result(instance: dg.DagsterInstance, notebook: Deliverable, env: str,
                           now: datetime) -> dg.AssetCheckResult:
    """Stale once the first schedule tick after the served report's publication, plus the grace, is past."""
    from croniter import croniter

    key = env_key(notebook.name, env)
    served = latest(instance, key)
    cron, grace = str(notebook.spec.schedule), float(notebook.spec.notebook.schedule_grace)
    if served is None:
        return dg.AssetCheckResult(asset_key=key, check_name=REPORT_CHECK, passed=False, severity=WARN,
                                   description=f"no report in {env} yet; deliver it: deliver run {notebook.name}")
    published = datetime.fromtimestamp(float(served.metadata.get(LAST_UPDATED) or served.recorded_at or 0), UTC)
    built = latest(instance, build_key(notebook.name))
    if built is not None and built.version == served.version and (built.recorded_at or 0) > published.timestamp():
        # a scheduled run whose inputs had not changed built the same version: the report is current
        published = datetime.fromtimestamp(float(built.recorded_at or 0), UTC)
    due = croniter(cron, published).get_next(datetime)
    deadline = due + timedelta(seconds=grace)
    passed = now < deadline
    when = f"published {published:%Y-%m-%d %H:%M} UTC"
    description = (
        f"the report of {served.version} ({when}) is current; the next is due at {due:%Y-%m-%d %H:%M} UTC "
        f"(schedule '{cron}') and may be {format_duration(grace)} late" if passed else
        f"the report in {env} is stale: {served.version} was {when}, a new one was due at {due:%Y-%m-%d %H:%M} UTC "
        f"(schedule '{cron}') and {format_duration(grace)} of grace have passed. See the runs of the "
        f"platform_schedules sensor, or deliver it now: deliver run {notebook.name}")
    metadata = {LAST_UPDATED: dg.MetadataValue.timestamp(published.timestamp()),
                "due": dg.MetadataValue.timestamp(due.timestamp()), "version": served.version}
    if passed:
        metadata[FRESH_UNTIL] = dg.MetadataValue.timestamp(deadline.timestamp())
    return dg.AssetCheckResult(asset_key=key, check_name=REPORT_CHECK, passed=passed, severity=WARN,
                               description=description, metadata=metadata)

