"""Looking at what runs, for the runtime sensor and the `live` check: local processes by pid and
health endpoint, Kubernetes Deployments by their readiness in the API.

Probes and scrapes go out in parallel (a thread pool over blocking HTTP calls with a short
timeout), so a tick over hundreds of endpoints costs about the slowest few, not their sum.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from platform_assets.liveness import DOWN, RESTARTING, STOPPED, UP, Live, latest_live
from platform_assets.serving_metrics import Snapshot, scrape
from platform_assets.settings import Environment, PlatformSettings
from platform_assets.supervision import Seen
from resources.deploy_target import probe
from resources.process_control import alive

PARALLEL = 32
T = TypeVar("T")
R = TypeVar("R")


def in_parallel(function: Callable[[T], R], items: list[T]) -> list[R]:
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(items))) as pool:
        return list(pool.map(function, items))


def observe_local(target: Any, names: Iterable[str], timeout_s: float, now: float) -> dict[str, Seen]:
    """Each deployment of `names` a LocalProcessTarget runs: alive (pid and start time) and healthy."""
    currents = {name: current for name in names if (current := target.current(name))}
    running = {name: alive(c["pid"], c.get("created")) for name, c in currents.items()}
    to_probe = [name for name in currents if running[name]]
    answers = dict(zip(to_probe, in_parallel(lambda n: probe(currents[n]["health_url"], timeout_s), to_probe),
                       strict=True))
    seen = {}
    for name, current in currents.items():
        healthy, detail = answers.get(name, (False, f"process {current['pid']} of {current['version']} is gone"))
        if not healthy and (target.current(name) or {}).get("pid") != current["pid"]:
            continue  # a deploy replaced it while it was probed: the next tick looks at the new one
        started = datetime.fromisoformat(current["started_at"]).timestamp()
        seen[name] = Seen(
            deployment=f"{current['version']}@{current.get('deployed_at', current['started_at'])}",
            version=current["version"], running=running[name], healthy=healthy, detail=detail,
            restarts=int(current.get("restarts", 0)), pid=int(current["pid"]), can_restart=True,
            starting=running[name] and not healthy and now - started < float(current.get("startup_timeout_s", 30)),
            metrics_url=current.get("direct_url"))
    return seen


def observe_kubernetes(target: Any, env: Environment, teams: dict[str, str]) -> dict[str, Seen]:
    """Each deliverable of `teams` (name -> owner) whose Deployment the platform manages in `env`."""
    from resources.k8s_readiness import platform_deployments

    namespaces = {name: env.namespace_for(team) for name, team in teams.items()}
    with target.api_client() as api:
        found = platform_deployments(api, namespaces.values())
    seen = {}
    for name, namespace in namespaces.items():
        ready = found.get((namespace, name))
        if ready is None:
            continue
        serving = ready.available > 0
        seen[name] = Seen(deployment=f"{ready.version}@{ready.generation}", version=ready.version, running=serving,
                          healthy=serving, detail=ready.detail, starting=not serving and ready.rollout == "progressing")
    return seen


def scrape_all(urls: dict[str, str], timeout_s: float) -> dict[str, Snapshot | None]:
    names = list(urls)
    return dict(zip(names, in_parallel(lambda n: scrape(urls[n], timeout_s), names), strict=True))


def observe(env: Environment, target: Any, teams: dict[str, str], timeout_s: float, now: float) -> dict[str, Seen]:
    """What runs in `env` of the deliverables in `teams` (name -> owner); GitOps targets are
    left to Argo CD's or Flux's health (the platform holds no API access there)."""
    if env.target == "local":
        return observe_local(target, teams, timeout_s, now)
    if env.target == "kubernetes":
        return observe_kubernetes(target, env, teams)
    return {}


def live_now(seen: Seen, before: Live | None, now: float) -> Live:
    """The state a probe shows, keeping the `since` of an unchanged state (no supervision)."""
    state = UP if seen.running and seen.healthy else RESTARTING if seen.starting else DOWN
    since = before.since if before and before.state == state and before.version == seen.version else now
    return Live(state=state, since=since, version=seen.version, restarts=seen.restarts, detail=seen.detail)


def probe_now(instance: Any, settings: PlatformSettings, targets: dict[str, Any], teams: dict[str, str],
              pairs: list[tuple[str, str]]) -> list[tuple[str, str, Live]]:
    """The `live` state of `pairs` now, for an execution of the check: nothing deployed is `stopped`;
    GitOps environments are not probed."""
    now = time.time()
    before = latest_live(instance, pairs)
    found = []
    for env in settings.environments:
        names = {name: teams[name] for name, e in pairs if e == env.name}
        if not names or env.target == "gitops":
            continue
        seen = observe(env, targets[env.name], names, settings.runtime.probe_timeout_s, now)
        for name in names:
            last = before.get((name, env.name))
            live = (live_now(seen[name], last, now) if name in seen else
                    last if last and last.state == STOPPED else Live(STOPPED, now, detail="nothing is deployed here"))
            found.append((name, env.name, live))
    return found
