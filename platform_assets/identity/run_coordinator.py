"""The run coordinator: Dagster's queued coordinator plus the requester of every run it accepts.

Configured under `run_coordinator:` in dagster.yaml (deploy/dagster.local.yaml, deploy/dagster.yaml,
the Helm values). It sees the HTTP request that launched a run from the UI or GraphQL, so behind
the authenticating proxy it reads the identity header (`identity.header`, X-Forwarded-Email by
default), and it sees the sensor tag of the daemon's runs. It attests what it saw on the run
(platform/requested_by, platform/identity_source, an HMAC with the platform key) and overwrites
whatever a launcher put in those tags, so a requester cannot be written by hand.
"""

from __future__ import annotations

import dagster as dg

from platform_assets.identity.requester import requester_tags
from platform_assets.settings import load_settings


class IdentityRunCoordinator(dg.QueuedRunCoordinator):
    def submit_run(self, context: dg.SubmitRunContext) -> dg.DagsterRun:
        settings = load_settings()
        run = context.dagster_run
        header = context.get_request_header(settings.identity.header)
        self._instance.add_run_tags(run.run_id, requester_tags(settings, run.run_id, run.tags, header))
        return super().submit_run(context)
