"""The `drift` check of every served model: one batched definition, run by one schedule.

A non-blocking asset check `drift` on each `<model>/<env>` (one `multi_asset_check` for the whole
catalog, subsettable, so a run may check one model or all of them) compares the inputs the
model server saw most recently (its ring buffer, read from `/-/sample` with the platform's token)
with the holdout of the version it serves, per feature (platform_assets/kinds/model/drift.py), and puts the
figures, a table and a plot in the check's metadata. The schedule `platform_model_drift`
(platform.yaml `models.drift_schedule`) runs it; a failed check of a model whose spec says
`on_drift: retrain` makes the drift trigger (sensors/triggers.py) request a rebuild.
"""

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import dagster as dg

from platform_assets.catalog import Catalog
from platform_assets.kinds.model.handler import HOLDOUT
from platform_assets.kinds.registry import get_handler
from platform_assets.model_token import sample_token
from platform_assets.records import env_key, latest
from platform_assets.serving_metrics import SAMPLE_PATH
from platform_assets.settings import PlatformSettings
from platform_assets.specs import Deliverable
from resources.artifact_store import ArtifactStore

DRIFT_CHECK = "drift"
CHECKS_NAME = "platform_model_drift"
SAMPLE_TIMEOUT_S = 30.0


def drift_checks(catalog: Catalog, settings: PlatformSettings) -> dg.AssetChecksDefinition | None:
    """The `drift` check on every environment asset of every model (None without models)."""
    models = {d.name: d for d in catalog if get_handler(d.kind).watches_drift}
    if not models:
        return None
    specs = [dg.AssetCheckSpec(DRIFT_CHECK, asset=env_key(name, env), blocking=False,
                               description=f"the inputs {name} serves in {env} match its training holdout")
             for name in models for env in settings.environment_names]

    @dg.multi_asset_check(name=CHECKS_NAME, specs=specs, can_subset=True, required_resource_keys={"artifact_store"},
                          description="Served inputs against the training holdout, per feature (KS/chi-square, PSI).")
    def _drift(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        for key in sorted(context.selected_asset_check_keys, key=lambda k: k.asset_key.path):
            name, env = key.asset_key.path
            yield check_drift(context.instance, context.resources.artifact_store, models[name], env, settings)

    return _drift


def drift_schedule(checks: dg.AssetChecksDefinition, settings: PlatformSettings) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(name=CHECKS_NAME, cron_schedule=settings.models.drift_schedule,
                                 execution_timezone="UTC", target=dg.AssetSelection.checks(checks),
                                 default_status=dg.DefaultScheduleStatus.RUNNING,
                                 description="Runs the `drift` check of every model in every environment.")


def check_drift(instance: dg.DagsterInstance, artifacts: ArtifactStore, deliverable: Deliverable, env: str,
                settings: PlatformSettings) -> dg.AssetCheckResult:
    """Compare what `deliverable` serves in `env` now with the holdout of the version it serves."""
    import pandas as pd

    from platform_assets.kinds.model.drift import feature_drift, markdown_table, plot

    name, drift = deliverable.name, deliverable.spec.model.drift
    key = env_key(name, env)
    deployed = latest(instance, key)
    if deployed is None or not deployed.metadata.get("url"):
        return _result(key, True, f"{name} is not served in {env}")
    version = deployed.version
    try:
        sample = read_sample(str(deployed.metadata["url"]), sample_token(settings, name, env))
    except (OSError, ValueError) as exc:
        return _result(key, False, f"cannot read what {name} {version} serves in {env}: {exc}",
                       {"version": version}, severity=dg.AssetCheckSeverity.WARN)
    served_rows = len(sample["rows"])
    if served_rows < drift.min_rows:
        return _result(key, True, f"{served_rows} rows served by {name} {version} in {env} since it started; "
                       f"drift is judged from {drift.min_rows} (model.drift.min_rows)",
                       {"version": version, "sampled_rows": served_rows})
    if not artifacts.exists(name, version, HOLDOUT):
        return _result(key, False, f"the holdout of {name} {version} is gone from the artifact store; nothing to "
                       "compare the served inputs with until a build stores one", {"version": version})
    holdout = pd.read_parquet(artifacts.path(name, version, HOLDOUT)).drop(columns=[deliverable.spec.model.label])
    unknown = sorted(set(drift.features) - set(holdout.columns))
    if unknown:
        return _result(key, False, f"{deliverable.path}: field 'model.drift.features' names {', '.join(unknown)}, "
                       f"not features of {name} {version} ({', '.join(holdout.columns)})", {"version": version})
    served = pd.DataFrame.from_records(sample["rows"])
    results = feature_drift(holdout, served, drift.features or list(holdout.columns), drift.psi_max,
                            drift.significance)
    drifted = [r for r in results if r.drifted]
    summary = (f"{len(drifted)} of {len(results)} features of {name} {version} in {env} drifted from the "
               f"holdout: " + ", ".join(f"{r.feature} (PSI {r.psi:.2f}, p {r.p_value:.2g})" for r in drifted)
               if drifted else f"{len(results)} features of {name} {version} in {env} match the holdout "
               f"({served_rows} served rows, largest PSI {max(r.psi for r in results):.2f})")
    image = plot(holdout, served, results, f"{name} {version} in {env}: holdout vs served")
    return _result(key, not drifted, summary, {
        "version": version,
        "sampled_rows": served_rows,
        "served_rows": sample["served_rows"],
        "holdout_rows": len(holdout),
        "drifted_features": [r.feature for r in drifted],
        "features": dg.MetadataValue.md(markdown_table(results)),
        "figures": dg.MetadataValue.json({r.feature: r.as_dict() for r in results}),
        "thresholds": dg.MetadataValue.json({"psi_max": drift.psi_max, "significance": drift.significance}),
        "plot": dg.MetadataValue.md(f"![holdout vs served](data:image/png;base64,{image})"),
    })


def read_sample(url: str, token: str) -> dict[str, Any]:
    """The model server's sample of served rows (`/-/sample`, opened by the platform's token only)."""
    request = urllib.request.Request(url.rstrip("/") + SAMPLE_PATH, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=SAMPLE_TIMEOUT_S) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ValueError(f"{url}{SAMPLE_PATH} answered HTTP {exc.code}") from exc


def _result(key: dg.AssetKey, passed: bool, summary: str, metadata: dict[str, Any] | None = None,
            severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    metadata = {k: (dg.MetadataValue.json(v) if isinstance(v, list) else v) for k, v in (metadata or {}).items()}
    return dg.AssetCheckResult(asset_key=key, check_name=DRIFT_CHECK, passed=passed, description=summary,
                               severity=severity, metadata={"summary": summary, **metadata})
