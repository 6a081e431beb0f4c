"""The benchmark's comparison must stay honest: `make bench` times our definitions against a bare
module generated to define exactly the same thing. This checks that generation still succeeds and
matches on the demo catalog (sensors included), so a new kind of definition cannot break the
benchmark unnoticed, and that the runtime sensor benchmark still runs (at a small size); the
timings themselves are `make bench`'s, never a test's. The lead-time benchmark delivers once."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from platform_assets.settings import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))

from bench_definitions import prepare_case


def test_the_bare_module_defines_what_the_platform_defines_for_the_demo(tmp_path: Path) -> None:
    case = prepare_case("demo", 7, PROJECT_ROOT / "catalog", tmp_path / "demo", tmp_path / "pycache")

    generated = (case.bare_dir / f"{case.bare_module}.py").read_text()
    assert "@dg.sensor(name='platform_promotion'" in generated and "@dg.asset" in generated


def test_the_runtime_benchmark_runs_at_small_size(tmp_path: Path) -> None:
    report = tmp_path / "runtime.json"
    completed = subprocess.run([sys.executable, "benchmarks/bench_runtime.py", "--local", "3", "--kubernetes", "5",
                                "--repeat", "1", "--json", str(report)], cwd=PROJECT_ROOT, capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    cases = {r["case"]: r["evaluations_first_tick"] for r in json.loads(report.read_text())}
    assert cases == {"local": 3, "kubernetes": 5}


def test_the_lead_time_benchmark_delivers_in_the_run_and_with_forked_steps(tmp_path: Path) -> None:
    """One delivery of the demo service by `dagster asset materialize` each way: the default (the
    chain of stages in the run's process) and steps forked from the preloaded forkserver, on an
    instance opened before as `make dev` leaves it; both must reach prod and the event log must give
    every figure."""
    report = tmp_path / "lead-time.json"
    command = [sys.executable, "benchmarks/bench_lead_time.py", "--repeat", "1", "--methods", "in-run", "forkserver",
               "--opened-instance", "--json", str(report)]
    completed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-3000:]
    figures = json.loads(report.read_text())
    assert figures["instance"] == "opened"
    runs = figures["runs"]
    [in_run], [forked] = runs["in-run"], runs["forkserver"]
    assert 0 < forked["startup"] < forked["work"] < forked["run"] < forked["wall"], forked
    assert math.isnan(in_run["startup"]) and 0 < in_run["work"] < in_run["run"] < in_run["wall"], in_run
    assert "RATIO forkserver" in completed.stdout and "RATIO in-run" in completed.stdout


def test_the_team_locations_benchmark_delivers_from_a_team_location(tmp_path: Path) -> None:
    """A small organisation: the demo service reaches prod from its team's location (`-m
    platform_assets.team_locations -a team_03`, its chain of stages in the run's process), and from
    the single location, with every figure read back."""
    report = tmp_path / "teams.json"
    completed = subprocess.run([sys.executable, "benchmarks/bench_team_locations.py", "--size", "40", "--repeat", "1",
                                "--deliveries", "1", "--json", str(report)], cwd=PROJECT_ROOT, capture_output=True,
                               text=True, timeout=600)
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-3000:]
    figures = json.loads(report.read_text())
    assert 0 < figures["import_dagster"][0] < figures["team_location"][0]
    for case in ("delivery_org", "delivery_demo", "delivery_org_single"):
        [run] = figures[case]
        assert 0 < run["work"] < run["run"] < run["wall"], (case, run)
    assert "RATIO team_location" in completed.stdout and "RATIO delivery" in completed.stdout


@pytest.mark.daemon
def test_the_daemon_lead_time_benchmark_reaches_prod_without_promotion_ticks(tmp_path: Path) -> None:
    """One source change under the real daemon: three runs (build and evaluate, staging, prod), the
    second and third requested by the run-status sensor when the previous succeeded. The promotion
    sensor ticks once an hour here, so it cannot be the one that promoted."""
    report = tmp_path / "daemon-lead-time.json"
    completed = subprocess.run([sys.executable, "benchmarks/bench_daemon_lead_time.py", "--changes", "1",
                                "--sensor-interval-s", "3600", "--json", str(report)], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-3000:]
    measured = json.loads(report.read_text())
    [change], [launched_by] = measured["changes"], measured["launched_by"]
    assert launched_by == ["platform_source_changes", "platform_promotion_on_success",
                           "platform_promotion_on_success"], launched_by
    assert change["runs"] == 3 and 0 < change["work"] < change["lead"], change
    assert "LEAD " in completed.stdout
