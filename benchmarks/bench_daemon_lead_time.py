"""Lead time with the daemon: a source change to the demo service, until it is healthy in prod.

Usage: .venv/bin/python benchmarks/bench_daemon_lead_time.py [--changes 5] [--sensor-interval-s S] [--json PATH]

The demo service without its model dependency (as in bench_lead_time.py, `auto` into staging and
prod, platform.yaml's `automation` at its defaults) is delivered once by hand on a fresh instance;
then `dagster-daemon run` starts on the project's workspace.yaml and, once the source sensor has
recorded its baseline, the benchmark changes a source file `--changes` times, each time waiting
until prod runs the new version healthy. Per change, from the event log:

- `lead`: the file written to the prod materialization that says `healthy`;
- `detect`: the file written to the first run created (the source sensor's tick);
- `hops`: a run's end to the next run created (the run-status sensor's tick), summed;
- `launch`: a run created to its RUN_START (the run worker starting, loading the code location);
- `work`: the sum of the steps' own durations (STEP_START to STEP_SUCCESS) in every run the change
  caused (build and evaluate, then one promotion per environment);
- `in_runs`: the rest, inside the runs (the steps' processes starting, events, the run ending);
- `runs`: how many runs the change took (the JSON report names the sensor that requested each).

Medians are reported with `lead / work`, the overhead figure issue 17 asks for (target: lead
under 20 s).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from bench_lead_time import ROOT, SERVICE, STAGES, prepare, stop_deployments

APP = Path(SERVICE) / "src" / "recommendations_api" / "app.py"


def bin_path(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def deliver_by_hand(env: dict[str, str]) -> None:
    selection = ",".join(f"{SERVICE}/{stage}" for stage in STAGES)
    completed = subprocess.run([bin_path("dagster"), "asset", "materialize", "-m", "platform_assets.definitions",
                                "--select", selection], cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=900)
    if completed.returncode != 0:
        raise SystemExit(f"the first delivery failed:\n{(completed.stdout + completed.stderr)[-4000:]}")


def wait(what: str, check, log: Path, deadline_s: float = 600, poll_s: float = 0.25):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(poll_s)
    raise SystemExit(f"timed out waiting for {what}; daemon log:\n{log.read_text(errors='replace')[-4000:]}")


def source_baseline(instance) -> bool:
    from dagster._core.scheduler.instigation import InstigatorType

    return any(state.instigator_name == "platform_source_changes" and state.instigator_data is not None
               and state.instigator_data.cursor  # type: ignore[union-attr]
               for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR))


def healthy_prod_after(instance, after: float):
    """The first prod materialization after `after` that says healthy, or None."""
    import dagster as dg

    event = instance.get_latest_materialization_event(dg.AssetKey([SERVICE, "prod"]))
    if event is None or event.timestamp <= after:
        return None
    metadata = event.asset_materialization.metadata  # type: ignore[union-attr]
    return event if metadata.get("healthy") and metadata["healthy"].value is True else None


def change_figures(instance, written: float, done: float) -> tuple[dict[str, float], list[str]]:
    """Where the lead time went, from the runs created between the change and its healthy prod
    deploy; and the sensor that requested each of those runs."""
    import dagster as dg

    runs = sorted((r for r in instance.get_runs(dg.RunsFilter(tags={"platform/deliverable": SERVICE}))
                   if written <= instance.get_run_record_by_id(r.run_id).create_timestamp.timestamp() <= done),
                  key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp)
    figures = dict.fromkeys(("detect", "hops", "launch", "work"), 0.0)
    previous_end = written
    for number, run in enumerate(runs):
        created = instance.get_run_record_by_id(run.run_id).create_timestamp.timestamp()
        figures["detect" if number == 0 else "hops"] += created - previous_end
        started: dict[str, float] = {}
        for entry in instance.all_logs(run.run_id):
            kind = entry.dagster_event_type
            if kind == dg.DagsterEventType.RUN_START:
                figures["launch"] += entry.timestamp - created
            elif kind == dg.DagsterEventType.STEP_START:
                started[entry.step_key] = entry.timestamp
            elif kind == dg.DagsterEventType.STEP_SUCCESS and entry.step_key in started:
                figures["work"] += entry.timestamp - started[entry.step_key]
            elif kind in (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE):
                previous_end = entry.timestamp
    lead = done - written
    in_runs = lead - figures["detect"] - figures["hops"] - figures["launch"] - figures["work"]
    return ({"lead": lead, **figures, "in_runs": in_runs, "runs": float(len(runs))},
            [run.tags.get("dagster/sensor_name", "") for run in runs])


def run_daemon(env: dict[str, str], home: Path, catalog: Path,
               changes: int) -> tuple[list[dict[str, float]], list[list[str]]]:
    import dagster as dg

    log = home / "daemon.log"
    with open(log, "w") as out:
        daemon = subprocess.Popen([bin_path("dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")], cwd=ROOT,
                                  env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    figures, launched_by = [], []
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            wait("the source sensor's baseline tick", lambda: source_baseline(instance), log)
            app = catalog / APP
            for number in range(1, changes + 1):
                app.write_text(app.read_text() + f"\n# change {number}\n")
                written = time.time()
                event = wait(f"change {number} healthy in prod", lambda w=written: healthy_prod_after(instance, w), log)
                measured, sensors = change_figures(instance, written, event.timestamp)
                figures.append(measured)
                launched_by.append(sensors)
                print(f"change {number}: " + ", ".join(f"{k} {v:.1f}" for k, v in figures[-1].items()), flush=True)
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
    return figures, launched_by


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--sensor-interval-s", type=int, help="automation.sensor_interval_s (default: platform.yaml's)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-daemon-lead-time-") as folder:
        tmp = Path(folder)
        env = prepare(tmp, "in-run")  # the default: chains in the run's process
        if args.sensor_interval_s:
            config = Path(env["PLATFORM_CONFIG"])
            settings = yaml.safe_load(config.read_text())
            settings.setdefault("automation", {})["sensor_interval_s"] = args.sensor_interval_s
            config.write_text(yaml.safe_dump(settings))
        try:
            deliver_by_hand(env)
            figures, launched_by = run_daemon(env, Path(env["DAGSTER_HOME"]), Path(env["PLATFORM_CATALOG_DIR"]),
                                              args.changes)
        finally:
            stop_deployments(env)
    median = {key: statistics.median(f[key] for f in figures) for key in figures[0]}
    print(f"medians of {len(figures)} changes (s):  " + "  ".join(f"{key} {value:.1f}" for key, value in median.items())
          + f"  lead/work {median['lead'] / median['work']:.2f}x")
    print(f"LEAD {median['lead']:.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"changes": figures, "launched_by": launched_by, "median": median}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
