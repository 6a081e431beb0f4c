"""How long does one runtime sensor tick take over many live deployments?

Usage: .venv/bin/python benchmarks/bench_runtime.py [--local 200] [--kubernetes 1000] [--repeat 5] [--json PATH]

Two cases, each on a fresh SQLite instance in a temporary DAGSTER_HOME with a synthetic catalog
(bench_catalog.py) and the real sensor (`build_sensor_context`):

- local: --local deliverables live in prod as local processes behind the environment's gateway.
  They are real HTTP endpoints (tests/served_app.py, with `/health` and the serving wrapper's
  `/-/metrics`), served 50 ports to a process, so the machine is not filled with interpreters;
  each has the `current.json` the local deploy target writes. Every tick checks every pid and
  probes every health endpoint.
- kubernetes: --kubernetes deliverables whose prod is a Kubernetes target, their Deployments read
  from the API stand-in (tests/k8s_api_server.py, in this process, so its JSON encoding competes
  with the sensor for the interpreter: the figures are pessimistic) with one list call per team
  namespace.

Timed ticks: the first (no cursor: every state is recorded, the latest `live` evaluations are read
once), an unchanged one (nothing recorded), and for local a tick where the periodic record is due
(every endpoint scraped, figures computed). Medians of --repeat; writing the first tick's
evaluations (what the daemon does after the tick) is timed too, for information. Target: each
tick under 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_catalog import teams_file, write_catalog

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PORTS_PER_PROCESS = 50
TARGET_S = 5.0


def timed(function: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def local_endpoints(names: list[str], env: str, processes: list[subprocess.Popen]) -> None:
    """Serve every name on a port of its own; write the current.json a deploy would have written.
    The servers go into `processes` as they start, so the caller stops them whatever fails."""
    from resources.deploy_target import free_port
    from resources.local_process import CURRENT, LocalProcessTarget
    from resources.process_control import create_time, write_json

    target = LocalProcessTarget(environment=env)
    ports: dict[str, int] = {}
    while len(ports) < len(names):  # the OS may hand out a port it gave before: keep them distinct
        port = free_port()
        if port not in ports.values():
            ports[names[len(ports)]] = port
    for start in range(0, len(names), PORTS_PER_PROCESS):
        chunk = names[start:start + PORTS_PER_PROCESS]
        command = [sys.executable, str(PROJECT_ROOT / "tests" / "served_app.py"), *(str(ports[n]) for n in chunk)]
        processes.append(subprocess.Popen(command, env={**os.environ, "PLATFORM_VERSION": "v1"}))
        for name in chunk:
            url = f"http://127.0.0.1:{ports[name]}"
            write_json(target.slot(name) / CURRENT, {
                "version": "v1", "pid": processes[-1].pid, "created": create_time(processes[-1].pid),
                "port": ports[name], "direct_url": url, "health_url": url + "/health",
                "url": target.gateway().url(name), "log": str(target.slot(name) / "process.log"),
                "command": [], "started_at": "2026-01-01T00:00:00+00:00", "deployed_at": "2026-01-01T00:00:00+00:00",
                "restarts": 0, "startup_timeout_s": 30})
    wait_healthy([f"http://127.0.0.1:{port}/health" for port in ports.values()])
    target.gateway().ensure()


def wait_healthy(urls: list[str], deadline_s: float = 60) -> None:
    from resources.deploy_target import probe

    end = time.monotonic() + deadline_s
    for url in urls:
        while not probe(url, timeout_s=1)[0]:
            if time.monotonic() > end:
                raise SystemExit(f"{url} did not answer within {deadline_s}s")
            time.sleep(0.1)


def kubernetes_deployments(server: Any, catalog: Any, env: Any) -> None:
    """Apply every deliverable's Deployment to the stand-in, as the Kubernetes target would."""
    from tests.k8s_api_server import APPLY

    for deliverable in catalog:
        namespace = env.namespace_for(deliverable.spec.owner)
        manifest = {"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": deliverable.name, "namespace": namespace,
                                 "labels": {"app.kubernetes.io/managed-by": "delivery-platform"},
                                 "annotations": {"platform.delivery/version": "v1"}},
                    "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "i:1"}]}}}}
        server.handle("PATCH", f"/apis/apps/v1/namespaces/{namespace}/deployments/{deliverable.name}", APPLY,
                      {"fieldManager": ["bench"]}, json.dumps(manifest))


def ticks(sensor: Any, instance: Any, catalog: Any, settings: Any, repeat: int,
          due_offset_s: float | None) -> dict[str, Any]:
    """Median first, unchanged (and due) tick times over `repeat` rounds, from no cursor each round."""
    import dagster as dg

    from platform_assets.liveness import LIVE
    from sensors.runtime import runtime_tick

    first, steady, due, recorded = [], [], [], 0
    for _ in range(repeat):
        took, result = timed(lambda: sensor(dg.build_sensor_context(instance=instance)))
        first.append(took)
        recorded = len(result.asset_events)
        assert recorded and all(e.check_name == LIVE for e in result.asset_events)
        took, again = timed(lambda r=result: sensor(dg.build_sensor_context(instance=instance, cursor=r.cursor)))
        steady.append(took)
        assert not again.asset_events, "a tick over unchanged deployments recorded evaluations"
        if due_offset_s is not None:  # the same tick function, as if record_every_s had passed
            later = time.time() + due_offset_s
            took, _ = timed(lambda r=result, t=later: runtime_tick(instance, catalog, settings, r.cursor,
                                                                   lambda _: None, t))
            due.append(took)
    write_s, _ = timed(lambda: [instance.report_runless_asset_event(e) for e in result.asset_events])
    report = {"first_tick_s": statistics.median(first), "steady_tick_s": statistics.median(steady),
              "evaluations_first_tick": recorded, "write_first_tick_evaluations_s": write_s}
    if due:
        report["due_tick_s"] = statistics.median(due)
    return report


def case(kind: str, size: int, repeat: int, tmp: Path) -> dict[str, Any]:
    os.environ["DAGSTER_HOME"] = str(tmp / "home")
    (tmp / "home").mkdir()
    (tmp / "home" / "dagster.yaml").write_text("")  # the defaults: SQLite in that folder
    import dagster as dg
    import yaml

    from platform_assets.catalog import load_catalog
    from platform_assets.settings import load_settings
    from sensors.runtime import runtime_sensor

    config = yaml.safe_load((PROJECT_ROOT / "platform.yaml").read_text())
    if kind == "kubernetes":
        config["environments"][1].update(target="kubernetes", namespace="{team}-{env}", registry="r.example.com")
    (tmp / "platform.yaml").write_text(yaml.safe_dump(config))
    os.environ["PLATFORM_CONFIG"] = str(tmp / "platform.yaml")
    settings = load_settings()
    root = write_catalog(tmp / "catalog", size)
    os.environ["PLATFORM_TEAMS_FILE"] = str(teams_file(root))
    catalog = load_catalog(root, settings)
    processes, server = [], None
    try:
        if kind == "local":
            local_endpoints([d.name for d in catalog], "prod", processes)
        else:
            from tests.k8s_api_server import FakeApiServer

            server = FakeApiServer()
            host = server.start()
            os.environ["KUBECONFIG"] = str(server.kubeconfig(tmp / "kubeconfig", host))
            kubernetes_deployments(server, catalog, settings.environment("prod"))
        with dg.DagsterInstance.get() as instance:
            sensor = runtime_sensor(catalog, settings)
            due = settings.runtime.record_every_s + 1 if kind == "local" else None
            report = ticks(sensor, instance, catalog, settings, repeat, due)
    finally:
        for process in processes:
            process.kill()
            process.wait()
        if kind == "local":
            from resources.local_process import LocalProcessTarget

            LocalProcessTarget(environment="prod").gateway().stop()
        if server is not None:
            server.stop()
    return {"case": kind, "deployments": size, **report, "target_s": TARGET_S}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", type=int, default=200)
    parser.add_argument("--kubernetes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    reports = []
    for kind, size in (("local", args.local), ("kubernetes", args.kubernetes)):
        if size:
            with tempfile.TemporaryDirectory(prefix=f"bench-runtime-{kind}-") as tmp:
                reports.append(case(kind, size, args.repeat, Path(tmp)))
    for report in reports:
        due = f", record due {report['due_tick_s']:.3f}s" if "due_tick_s" in report else ""
        slowest = max(v for k, v in report.items() if k.endswith("_tick_s"))
        print(f"runtime sensor, {report['deployments']} {report['case']} deployments: first tick "
              f"{report['first_tick_s']:.3f}s ({report['evaluations_first_tick']} evaluations; writing them "
              f"{report['write_first_tick_evaluations_s']:.3f}s), unchanged {report['steady_tick_s']:.3f}s{due} "
              f"(median of {args.repeat}; target < {TARGET_S:.0f}s: {'OK' if slowest < TARGET_S else 'OVER'})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
