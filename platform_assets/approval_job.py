"""The approval job: `deliver approve` (or a launch from the UI) runs it to record an approval.

One op job for the whole catalog, configured with the deliverable, environment and version. Its
step verifies who asked (a signed request, the proxy's identity, or the OS user in the embedded
default), that they are an approver of that environment and that the version is the one waiting
there, then records the approval with its proof (platform_assets/identity/approvals.py).
"""


import dagster as dg

from platform_assets.catalog import Catalog
from platform_assets.errors import ActionRefused
from platform_assets.records import env_key
from platform_assets.settings import PlatformSettings

APPROVAL_JOB = "platform_approve"
APPROVAL_OP = "record_approval"


class ApprovalRequest(dg.Config):
    deliverable: str
    environment: str
    version: str


def approval_run_config(name: str, env: str, version: str) -> dict:
    return {"ops": {APPROVAL_OP: {"config": {"deliverable": name, "environment": env, "version": version}}}}


def approval_job(catalog: Catalog, settings: PlatformSettings) -> dg.JobDefinition:
    @dg.op(name=APPROVAL_OP, description="Verify the approver and record the approval on <name>/<env>.")
    def record(context: dg.OpExecutionContext, config: ApprovalRequest) -> None:
        from platform_assets.delivery_actions import record_approval

        try:
            metadata = record_approval(context.instance, catalog, settings, context.run_id, dict(context.run.tags),
                                       config.deliverable, config.version, config.environment)
        except ActionRefused as exc:
            raise dg.Failure(f"approval refused: {exc}") from exc
        context.log_event(dg.AssetObservation(asset_key=env_key(config.deliverable, config.environment),
                                              metadata=metadata))
        context.log.info(f"{metadata['approved_by']} approved {config.deliverable} {config.version} "
                         f"for {config.environment} ({metadata['proof']} proof)")

    @dg.job(name=APPROVAL_JOB, description="Records an approval of a version for a manual environment.",
            tags={"platform/action": "approve"})
    def _approvals() -> None:
        record()

    return _approvals
