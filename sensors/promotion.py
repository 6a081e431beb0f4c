"""Automated promotion: one sensor moves versions along every deliverable's path, from evaluate
(gates passed) into the first environment and from each environment (healthy) into the next.

A tick reads the latest evaluation and deploy materialization of every deliverable in one batched
event-log query, the approvals recorded since the previous tick in one more, and the unfinished
runs in a third (an environment that a queued or running run is about to deploy is left to it). A
version that passed its gates, or is healthy in an environment, is requested for the next one when
the spec's `promotion` policy allows it: `auto`, or `manual` with an approval of that version for
that environment by one of its `approvers` whose proof verifies (platform_assets/identity/approvals.py).
The run key is `promote:<name>:<version>:<env>`, so the daemon never launches the same promotion
twice (a repeated tick, a restart mid-tick), and the cursor remembers what was requested, so a tick
over unchanged state requests nothing.

A second sensor, on run status, removes the wait between environments: as soon as a run of this
code location succeeds it requests the `auto` promotions now due for the deliverables that run
delivered (its evaluation into the first environment, its deploy into the next), with the same
plan and run keys. A promotion whose run key any run already carries is not requested again
(Dagster dedupes run keys per sensor only), so the two sensors never both launch one.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise

import dagster as dg

from platform_assets.catalog import Catalog
from platform_assets.handlers.base import Deployed
from platform_assets.identity.approvals import APPROVAL_EVENT, check_approval
from platform_assets.identity.requester import registry
from platform_assets.records import TRIGGER_TAG, deploy_check_keys, env_key, evaluate_key, latest_records, observed
from platform_assets.settings import PlatformSettings
from platform_assets.specs import Deliverable
from sensors.catalog_sensor import AssetJob, catalog_sensor


@dataclass(frozen=True)
class Promotion:
    deliverable: str
    version: str
    environment: str
    source: str

    @property
    def run_key(self) -> str:
        return f"promote:{self.deliverable}:{self.version}:{self.environment}"

    def run_request(self) -> dg.RunRequest:
        return dg.RunRequest(
            run_key=self.run_key,
            asset_selection=[env_key(self.deliverable, self.environment)],
            asset_check_keys=deploy_check_keys(self.deliverable, self.environment),
            tags={TRIGGER_TAG: "promotion", "platform/deliverable": self.deliverable,
                  "platform/version": self.version, "platform/environment": self.environment},
        )


@dataclass
class PromotionCursor:
    """Approvals seen so far (name, env, version) and the promotions already requested."""

    after_storage_id: int = 0
    approvals: set[tuple[str, str, str]] = field(default_factory=set)
    requested: set[str] = field(default_factory=set)

    @classmethod
    def parse(cls, text: str | None) -> PromotionCursor:
        if not text:
            return cls()
        raw = json.loads(text)
        return cls(raw["after"], {tuple(a) for a in raw["approvals"]}, set(raw["requested"]))  # type: ignore[misc]

    def dump(self) -> str:
        return json.dumps({"after": self.after_storage_id, "approvals": sorted(self.approvals),
                           "requested": sorted(self.requested)})


def read_new_approvals(instance: dg.DagsterInstance, catalog: Catalog, settings: PlatformSettings,
                       cursor: PromotionCursor) -> None:
    """Every approval observation recorded after the cursor, in one query; those whose proof
    verifies for an approver go into the cursor (the deploy step checks them again).

    `fetch_observations` reads one asset key per query; across the catalog only the event-records
    query does it in one, hence its deprecation warning is silenced here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        records = instance.get_event_records(
            dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_OBSERVATION,
                                  after_cursor=cursor.after_storage_id or None),
            ascending=True,
        )
    teams = None
    for record in records:
        cursor.after_storage_id = max(cursor.after_storage_id, record.storage_id)
        metadata = observed(record)
        name = record.asset_key.path[0]
        if metadata.get("event") != APPROVAL_EVENT or name not in catalog.deliverables:
            continue
        env = str(metadata.get("environment"))
        teams = teams or registry(settings)
        if env in settings.environment_names and check_approval(metadata, catalog.deliverables[name], env,
                                                                settings, teams).valid:
            cursor.approvals.add((name, env, str(metadata["version"])))


def plan_promotions(catalog: Iterable[Deliverable], settings: PlatformSettings,
                    records: dict[dg.AssetKey, Deployed | None],
                    approvals: set[tuple[str, str, str]]) -> list[Promotion]:
    """What may move now: its gates passed (into the first environment) or healthy in the previous
    environment, not yet in the next, policy satisfied."""
    environments = settings.environment_names
    planned = []
    for deliverable in catalog:
        for previous, env in pairwise([EVALUATE, *environments]):
            source = records.get(_source_key(deliverable.name, previous))
            if source is None or source.metadata.get("gates_passed" if previous == EVALUATE else "healthy") is not True:
                continue
            current = records.get(env_key(deliverable.name, env))
            if current is not None and current.version == source.version:
                continue
            policy = deliverable.spec.policy(env)
            if policy.mode == "manual" and (deliverable.name, env, source.version) not in approvals:
                continue
            planned.append(Promotion(deliverable.name, source.version, env, previous))
    return planned


EVALUATE = "evaluate"  # what the first environment is promoted from


def _source_key(name: str, previous: str) -> dg.AssetKey:
    return evaluate_key(name) if previous == EVALUATE else env_key(name, previous)


UNFINISHED = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED]


def assets_in_flight(instance: dg.DagsterInstance) -> set[dg.AssetKey]:
    """The assets that queued or running runs will materialize, in one query: a promotion waits
    while a run (a delivery through prod, a rollback) is about to deploy the same environment."""
    runs = instance.get_runs(dg.RunsFilter(statuses=UNFINISHED))
    return {key for run in runs for key in (run.asset_selection or ())}


def never_requested(instance: dg.DagsterInstance, promotions: list[Promotion]) -> list[Promotion]:
    """Those no run carries the run key of yet, by either promotion sensor (one query each)."""
    return [p for p in promotions
            if not instance.get_run_ids(dg.RunsFilter(tags={"dagster/run_key": p.run_key}), limit=1)]


def planned_now(instance: dg.DagsterInstance, deliverables: list[Deliverable], settings: PlatformSettings,
                approvals: set[tuple[str, str, str]]) -> list[Promotion]:
    """What may move now among `deliverables` (one batched read), leaving environments that a
    queued or running run is about to deploy to it."""
    keys = [key for d in deliverables for key in (evaluate_key(d.name), *(env_key(d.name, env)
                                                                           for env in settings.environment_names))]
    records = latest_records(instance, keys)
    busy = assets_in_flight(instance)
    return [p for p in plan_promotions(deliverables, settings, records, approvals)
            if env_key(p.deliverable, p.environment) not in busy]


def promotion_tick(instance: dg.DagsterInstance, catalog: Catalog, settings: PlatformSettings,
                   cursor_text: str | None) -> tuple[list[Promotion], str]:
    """One tick as plain logic: the promotions to request and the next cursor."""
    cursor = PromotionCursor.parse(cursor_text)
    read_new_approvals(instance, catalog, settings, cursor)
    planned = planned_now(instance, list(catalog), settings, cursor.approvals)
    new = never_requested(instance, [p for p in planned if p.run_key not in cursor.requested])
    cursor.requested = {p.run_key for p in planned}  # what is still pending; done ones drop out
    return new, cursor.dump()


def promotions_after(instance: dg.DagsterInstance, catalog: Catalog, settings: PlatformSettings,
                     run: dg.DagsterRun) -> list[Promotion]:
    """The `auto` promotions due now for the deliverables a successful run delivered (the assets
    it materialized name them, one query); `manual` ones wait for the promotion sensor, which
    reads the approvals."""
    records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    names = sorted({key.path[0] for key in (r.asset_key for r in records)
                    if key is not None and key.path[0] in catalog.deliverables})
    if not names:
        return []
    return never_requested(instance, planned_now(instance, [catalog.deliverables[n] for n in names], settings,
                                                 set()))


def promotion_sensors(catalog: Catalog, settings: PlatformSettings) -> list[dg.SensorDefinition]:
    """The promotion sensor and the run-status sensor, both launching runs of one job.

    `platform_promote` holds every environment asset (its checks included), of which each request
    selects one environment: a chain, which on one machine the location's executor runs in the
    run's own process (already a fresh one per run; local_executor.py)."""
    keys = [env_key(d.name, env) for d in catalog for env in settings.environment_names]
    promote = dg.define_asset_job(
        "platform_promote", selection=dg.AssetSelection.assets(*keys),
        description="Deploys a version into one environment (promotions).")
    tick = catalog_sensor(
        "platform_promotion", "Moves healthy versions to the next environment by each spec's promotion policy.",
        settings.automation.sensor_interval_s, promote,
        lambda context: _requests(promotion_tick(context.instance, catalog, settings, context.cursor)))
    return [tick, promotion_on_success_sensor(catalog, settings, promote)]


def promotion_on_success_sensor(catalog: Catalog, settings: PlatformSettings,
                                promote: AssetJob) -> dg.SensorDefinition:
    """Requests the next environment when a run succeeds, instead of at the next promotion tick.
    The daemon evaluates sensors every 5 s at most, hence the interval."""

    @dg.run_status_sensor(name="platform_promotion_on_success", run_status=dg.DagsterRunStatus.SUCCESS,
                          request_job=promote, minimum_interval_seconds=1,
                          default_status=dg.DefaultSensorStatus.RUNNING,
                          description="Promotes a deliverable to its next environment (auto policy) as soon as the "
                                      "run that evaluated or deployed it succeeds.")
    def _sensor(context: dg.RunStatusSensorContext) -> list[dg.RunRequest] | None:
        promotions = promotions_after(context.instance, catalog, settings, context.dagster_run)
        # None lets the sensor go on to the next finished run in the same tick.
        return [p.run_request() for p in promotions] or None

    return _sensor


def _requests(tick: tuple[list[Promotion], str]) -> tuple[list[dg.RunRequest], str]:
    promotions, cursor = tick
    return [p.run_request() for p in promotions], cursor
