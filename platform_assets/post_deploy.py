"""What the deploy stage checks once a version serves: the handler's own health check, then the
spec's `slo:` over a verification window (platform_assets/slo.py). One place for every kind that
serves; a failed result is what rolls the environment back (stages.py, `_roll_back_unhealthy`).

On manifest targets a scrape through the Service reaches one pod at a time, so two scrapes are no
window over the workload: there `healthy` stays the rollout's readiness, and the record says the
SLO was not verified.
"""

from __future__ import annotations

from typing import Any

from platform_assets.handlers.base import GateResult, KindHandler, StageContext
from platform_assets.slo import Slo, verify
from resources.deploy_target import DeployTarget
from resources.manifest_target import ManifestTarget


def post_deploy_check(ctx: StageContext, handler: KindHandler, deployment: dict[str, Any],
                      target: DeployTarget) -> GateResult:
    """The `healthy` result of a deployment: the SLO is verified only once the version is healthy."""
    health = handler.verify(ctx, deployment, target)
    slo: Slo | None = getattr(ctx.spec, "slo", None)
    if slo is None or not health.passed:
        return health
    if isinstance(target, ManifestTarget) or not deployment.get("url"):
        return GateResult(health.name, health.passed, health.summary,
                          {**health.metadata, "slo": {"verified": False, "why": "not verified on manifest targets"}})
    ctx.log.info(f"verifying {ctx.name} {deployment['version']} against its SLO for {slo.window_s:g}s")
    held, summary, record = verify(slo, str(deployment["url"]), handler.smoke_headers(ctx, deployment))
    return GateResult(health.name, held, f"{health.summary}; {summary}", {**health.metadata, "slo": record})
