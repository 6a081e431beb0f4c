"""`platform/delivery_metrics`: DORA's four figures for the whole catalog, refreshed on a schedule.

Its metadata holds the tables (per deliverable, kind and team, the last 30 days) and weekly trend
plots, so the UI shows how fast and how safely the organisation delivers, over time.
"""


import base64
import io
import time

import dagster as dg

from platform_assets.catalog import Catalog
from platform_assets.delivery_metrics import (
    DAY_S,
    DeliveryFigures,
    delivery_metrics,
    figures_of,
    markdown_table,
    prod_events,
)
from platform_assets.settings import PlatformSettings

METRICS_KEY = dg.AssetKey(["platform", "delivery_metrics"])
WINDOW_DAYS = 30
TREND_WEEKS = 12


def delivery_metrics_asset(catalog: Catalog, settings: PlatformSettings) -> dg.AssetsDefinition:
    @dg.asset(key=METRICS_KEY, group_name="platform", kinds={"python"},
              description=f"Deployment frequency, lead time for changes, change failure rate and time to "
                          f"restore per deliverable, kind and team over the last {WINDOW_DAYS} days, from the "
                          "event log; `deliver metrics` prints the same.")
    def _delivery_metrics(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        now = time.time()
        tables = delivery_metrics(context.instance, catalog, settings, now - WINDOW_DAYS * DAY_S, now)
        trend = weekly_trend(context.instance, catalog, settings, now)
        return dg.MaterializeResult(metadata={
            **{f"by_{group}": dg.MetadataValue.md(markdown_table(figures, group)) for group, figures in tables.items()},
            "deploys_to_prod": sum(f.deploys for f in tables["kind"]),
            "trend": dg.MetadataValue.md(f"![weekly trend](data:image/png;base64,{_plot(trend)})"),
        })

    return _delivery_metrics


def delivery_metrics_schedule() -> dg.ScheduleDefinition:
    """Daily at 06:00 UTC, on by default: the figures are fresh every morning."""
    return dg.ScheduleDefinition(name="platform_delivery_metrics", cron_schedule="0 6 * * *",
                                 execution_timezone="UTC", target=dg.AssetSelection.assets(METRICS_KEY),
                                 default_status=dg.DefaultScheduleStatus.RUNNING,
                                 description="Refreshes platform/delivery_metrics (DORA's four figures).")


def weekly_trend(instance: dg.DagsterInstance, catalog: Catalog, settings: PlatformSettings,
                 now: float) -> list[tuple[float, DeliveryFigures]]:
    """The whole catalog's figures per week, oldest first (the same three queries, once)."""
    start = now - TREND_WEEKS * 7 * DAY_S
    events, changes = prod_events(instance, catalog, settings, start)
    weeks = []
    for week in range(TREND_WEEKS):
        begin = start + week * 7 * DAY_S
        inside = [e for e in events if begin <= e.timestamp < begin + 7 * DAY_S]
        weeks.append((begin, figures_of("all", inside, changes, 7)))
    return weeks


def _plot(trend: list[tuple[float, DeliveryFigures]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weeks = list(range(-len(trend) + 1, 1))
    figure, (deploys, lead) = plt.subplots(1, 2, figsize=(8, 3), dpi=80)
    deploys.bar(weeks, [f.deploys for _, f in trend], color="#4C78A8")
    deploys.set(title="deploys to prod per week", xlabel="week (0 = this week)")
    lead.plot(weeks, [(f.lead_time_s or 0) / 3600 for _, f in trend], marker="o", color="#F58518")
    lead.set(title="median lead time (h)", xlabel="week (0 = this week)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()
