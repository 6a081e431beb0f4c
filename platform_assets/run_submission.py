"""Submitting runs as the UI does: through the webserver's GraphQL API (Dagster's own client).

`deliver promote`, `rollback` and `approve` do not execute anything themselves: their runs go to
the instance's run queue, its run launcher and, in production, the Kubernetes executor, exactly
like a launch from the UI, and the run coordinator attests who asked. `--wait` follows the run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from platform_assets.settings import PlatformSettings, SettingsError

WEBSERVER_ENV = "PLATFORM_WEBSERVER_URL"
TOKEN_ENV = "PLATFORM_WEBSERVER_TOKEN"  # a bearer token for the authenticating proxy, when it takes one
ASSET_JOB = "__ASSET_JOB"
REPOSITORY = "__repository__"  # the repository a location's Definitions make
TERMINAL = ("SUCCESS", "FAILURE", "CANCELED")
_FAILURES = """
query Failures($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection { events { __typename
      ... on ExecutionStepFailureEvent { stepKey error { message } }
      ... on RunFailureEvent { message } } }
  }
}
"""
_DAEMONS = "{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"


@dataclass(frozen=True)
class Outcome:
    run_id: str
    status: str
    failures: list[str]


def webserver_url(settings: PlatformSettings) -> str:
    return (os.environ.get(WEBSERVER_ENV) or settings.identity.webserver_url).rstrip("/")


def run_url(settings: PlatformSettings, run_id: str) -> str:
    return f"{webserver_url(settings)}/runs/{run_id}"


def _headers() -> dict[str, str] | None:
    return {"Authorization": f"Bearer {os.environ[TOKEN_ENV]}"} if os.environ.get(TOKEN_ENV) else None


def _client(settings: PlatformSettings) -> Any:
    from dagster_graphql import DagsterGraphQLClient

    url = urlparse(webserver_url(settings))
    return DagsterGraphQLClient(url.hostname or "127.0.0.1", port_number=url.port, use_https=url.scheme == "https",
                                path_prefix=url.path.rstrip("/"), headers=_headers(), timeout=60)


def _query(settings: PlatformSettings, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """A read the client has no call for (a run's failure events, daemon health), as plain GraphQL."""
    import requests

    response = requests.post(f"{webserver_url(settings)}/graphql", json={"query": query, "variables": variables or {}},
                             headers=_headers(), timeout=60)
    response.raise_for_status()
    return response.json()["data"]


def _unreachable(settings: PlatformSettings, exc: Exception) -> SettingsError:
    return SettingsError(f"no Dagster webserver answers at {webserver_url(settings)} ({str(exc).splitlines()[0]}); "
                         f"start `make dev` (UI and daemon), or set {WEBSERVER_ENV} to the platform's URL")


def submit(settings: PlatformSettings, location: str, tags: dict[str, str], assets: Sequence[Any] = (),
           job: str = ASSET_JOB, run_config: dict[str, Any] | None = None) -> str:
    """Queue a run of `assets` (asset keys) or of the op job `job` in the code location `location`
    (workspace.location_of: every location has an asset job and an approval job); return its run id."""
    from dagster_graphql import DagsterGraphQLClientError

    try:
        return _client(settings).submit_job_execution(job, repository_location_name=location,
                                                      repository_name=REPOSITORY, run_config=run_config or {},
                                                      tags=tags, asset_selection=list(assets) or None)
    except DagsterGraphQLClientError as exc:
        if "connect" in str(exc).lower():
            raise _unreachable(settings, exc) from exc
        raise SettingsError(f"the webserver at {webserver_url(settings)} refused the run: {exc}") from exc


def follow(settings: PlatformSettings, run_id: str, timeout_s: float = 3600.0, on_queued: Any = None) -> Outcome:
    """Poll until the run ends; `on_queued(message)` hears once if it waits with no daemon to launch it."""
    client = _client(settings)
    deadline, warned = time.monotonic() + timeout_s, False
    while True:
        status = client.get_run_status(run_id).value
        if status in TERMINAL:
            return Outcome(run_id, status, _failures(settings, run_id) if status != "SUCCESS" else [])
        if status == "QUEUED" and not warned and on_queued and not _queue_daemon_healthy(settings):
            on_queued("the run is queued, and no dagster-daemon is running to launch it (start `make dev`)")
            warned = True
        if time.monotonic() > deadline:
            return Outcome(run_id, status, [f"still {status} after {timeout_s:.0f}s"])
        time.sleep(1.0)


def _failures(settings: PlatformSettings, run_id: str) -> list[str]:
    events = _query(settings, _FAILURES, {"runId": run_id}).get("logsForRun", {}).get("events", [])
    steps = [f"{e['stepKey']}: {e['error']['message'].strip()}" for e in events
             if e["__typename"] == "ExecutionStepFailureEvent" and e.get("error")]
    return steps or [e["message"] for e in events if e["__typename"] == "RunFailureEvent"]


def _queue_daemon_healthy(settings: PlatformSettings) -> bool:
    statuses = _query(settings, _DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
    return any(s["daemonType"] == "QUEUED_RUN_COORDINATOR" and s["healthy"] for s in statuses)
