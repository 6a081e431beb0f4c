"""How much of a manual delivery is the work, and how much is Dagster starting processes?

Usage: .venv/bin/python benchmarks/bench_lead_time.py [--repeat 3] [--methods in-run forkserver spawn]
       [--opened-instance] [--json PATH]

The demo service without its model dependency (`recommendations-api`, `depends_on` dropped) is
delivered through build, evaluate, staging and prod by the README's command, `dagster asset
materialize -m platform_assets.definitions --select ...`, on a fresh instance each time (a new
DAGSTER_HOME: nothing reused, the local deploy targets stopped afterwards; with --opened-instance its
storages are created first, as `make dev` leaves them, so the command only connects), once per way of running
the steps (platform.yaml `execution`): `in-run`, the default, runs the chain of four stages in the
run's own process (`local_chain_in_run`); `forkserver` and `spawn` give each step a process of its
own, forked from the preloaded forkserver or a fresh interpreter (`local_start_method`). From the
run's event log:

- `work`: the sum of the four steps' own durations (STEP_START to STEP_SUCCESS);
- `start-up`: per step, the executor launching its process (STEP_WORKER_STARTING) to its first
  event (STEP_START), the mean of the four (forked or spawned steps only);
- `run`: the run's first event to its last;
- `wall`: the command, start to exit (interpreter, code location load, run, exit).

Medians of --repeat are reported with `wall / work`, the overhead figure issue 17 asks for
(target 1.5x; per-step start-up under 1 s).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "recommendations-api"
STAGES = ("build", "evaluate", "staging", "prod")


METHODS = {  # how the run's steps execute: platform.yaml `execution` settings
    "in-run": {"local_chain_in_run": True},  # the default: the four stages are a chain
    "forkserver": {"local_chain_in_run": False, "local_start_method": "forkserver"},
    "spawn": {"local_chain_in_run": False, "local_start_method": "spawn"},
}


def prepare(tmp: Path, method: str) -> dict[str, str]:
    """A fresh instance, a one-service catalog and a platform.yaml with `method`: the command's environment."""
    home, catalog = tmp / "home", tmp / "catalog"
    home.mkdir()
    shutil.copyfile(ROOT / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    shutil.copytree(ROOT / "catalog" / SERVICE, catalog / SERVICE, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    spec_path = catalog / SERVICE / "deliverable.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec.pop("depends_on", None)
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    config = yaml.safe_load((ROOT / "platform.yaml").read_text())
    config.setdefault("execution", {}).update(METHODS[method])
    config.setdefault("identity", {})["teams_file"] = str(ROOT / "teams.yaml")
    (tmp / "platform.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PLATFORM_"))}
    env.update(DAGSTER_HOME=str(home), PLATFORM_CATALOG_DIR=str(catalog), PLATFORM_CONFIG=str(tmp / "platform.yaml"))
    return env


def open_instance(env: dict[str, str]) -> None:
    """Create the instance's storages (SQLite schemas, about 0.5 s), as `make dev` does on its first start."""
    subprocess.run([sys.executable, "-c", "import dagster; dagster.DagsterInstance.get().get_runs(limit=1)"],
                   cwd=ROOT, env=env, check=True, timeout=120)


def deliver_once(method: str, opened: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-lead-time-") as folder:
        tmp = Path(folder)
        env = prepare(tmp, method)
        if opened:
            open_instance(env)
        selection = ",".join(f"{SERVICE}/{stage}" for stage in STAGES)
        start = time.perf_counter()
        completed = subprocess.run(
            [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "platform_assets.definitions",
             "--select", selection], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        wall = time.perf_counter() - start
        try:
            if completed.returncode != 0:
                raise SystemExit(f"the delivery failed ({method}):\n{(completed.stdout + completed.stderr)[-4000:]}")
            return {"wall": wall, **event_figures(Path(env["DAGSTER_HOME"]))}
        finally:
            stop_deployments(env)


def event_figures(home: Path) -> dict[str, float]:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs(limit=1)
        events = instance.all_logs(run.run_id)
    started: dict[str, float] = {}
    launching: dict[str, float] = {}
    work, startup = 0.0, []
    for entry in events:
        kind = entry.dagster_event_type
        if kind is None or entry.step_key is None:
            continue
        if kind == dg.DagsterEventType.STEP_WORKER_STARTING:
            launching[entry.step_key] = entry.timestamp
        elif kind == dg.DagsterEventType.STEP_START:
            started[entry.step_key] = entry.timestamp
            if entry.step_key in launching:
                startup.append(entry.timestamp - launching[entry.step_key])
        elif kind == dg.DagsterEventType.STEP_SUCCESS:
            work += entry.timestamp - started[entry.step_key]
    return {"work": work, "run": events[-1].timestamp - events[0].timestamp,
            "startup": statistics.mean(startup) if startup else float("nan")}


def stop_deployments(env: dict[str, str]) -> None:
    """The environments' processes outlive the command; stop them as `deliver` would."""
    script = ("from resources.local_process import LocalProcessTarget\n"
              "from platform_assets.settings import load_settings\n"
              "for name in load_settings().environment_names:\n"
              "    target = LocalProcessTarget(environment=name)\n"
              "    [target.stop(d) for d in target.deployed_names()]\n")
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, timeout=120)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--opened-instance", action="store_true", help="create the instance's storages first")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {method: [] for method in args.methods}
    for _ in range(args.repeat):  # alternate, so drift on the machine touches both alike
        for method in args.methods:
            runs[method].append(deliver_once(method, args.opened_instance))
    print(f"instance: {'opened before (as after make dev)' if args.opened_instance else 'fresh'}")
    print(f"{'steps':<13} {'work (s)':>9} {'start-up/step (s)':>18} {'run (s)':>8} {'wall (s)':>9} "
          f"{'wall/work':>10}")
    medians = {}
    for method, figures in runs.items():
        median = {key: statistics.median(f[key] for f in figures) for key in figures[0]}
        medians[method] = median
        print(f"{method:<13} {median['work']:>9.1f} {median['startup']:>18.2f} {median['run']:>8.1f} "
              f"{median['wall']:>9.1f} {median['wall'] / median['work']:>9.2f}x")
        print(f"RATIO {method} {median['wall'] / median['work']:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"instance": "opened" if args.opened_instance else "fresh", "runs": runs,
                                               "medians": medians}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
