"""What a code location per team buys an organisation of 1,000 deliverables in 10 teams.

Usage: .venv/bin/python benchmarks/bench_team_locations.py [--size 1000] [--repeat 5] [--deliveries 3] [--json PATH]

The organisation is bench_catalog's synthetic one (`--size` services, 10 teams) plus the demo
service (`recommendations-api`, `depends_on` dropped) owned by `team-03`, served with
`code_locations: per_team`. Each figure is a fresh interpreter, medians of the repeats:

- `import dagster`: the floor every code server, run worker and step process pays;
- `team location`: one team's location (`platform_assets.team_locations`, attribute `team_03`)
  loaded the way a code server does (load_once.py: import, validate_loadable, the asset graph);
- `single location`: the whole organisation as one location (`platform_assets.definitions`), what
  each of those processes paid before;
- `delivery`: the demo service delivered through build, evaluate, staging and prod with `dagster
  asset materialize` (wall time, fresh instance) from its team's location in the organisation,
  beside the same delivery in the demo catalog's single location (7 deliverables) and in the
  organisation served as one location (what it cost before).

Issue 17's targets: team location < 3x `import dagster`; delivery in the organisation <= 1.5x the
demo's.
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
from bench_catalog import teams_file, write_catalog
from bench_lead_time import STAGES, event_figures, stop_deployments

ROOT = Path(__file__).resolve().parents[1]
LOAD_ONCE = Path(__file__).with_name("load_once.py")
SERVICE, TEAM, ATTRIBUTE = "recommendations-api", "team-03", "team_03"


def organisation(tmp: Path, size: int) -> dict[str, str]:
    """The synthetic organisation with the demo service in team-03, per team: the environment to load it."""
    catalog = write_catalog(tmp / "catalog", size)
    copy_service(catalog, TEAM)
    config = yaml.safe_load((ROOT / "platform.yaml").read_text())
    config["code_locations"] = "per_team"
    (tmp / "platform.yaml").write_text(yaml.safe_dump(config))
    return {**base_env(), "PLATFORM_CATALOG_DIR": str(catalog), "PLATFORM_CONFIG": str(tmp / "platform.yaml"),
            "PLATFORM_TEAMS_FILE": str(teams_file(catalog)), "PLATFORM_STATE_DIR": str(tmp / "state")}


def demo(tmp: Path) -> dict[str, str]:
    """The demo catalog (the service without its model dependency), one location."""
    catalog = tmp / "catalog"
    shutil.copytree(ROOT / "catalog", catalog, ignore=shutil.ignore_patterns("build", "*.egg-info", "node_modules"))
    copy_service(catalog, None)
    return {**base_env(), "PLATFORM_CATALOG_DIR": str(catalog), "PLATFORM_STATE_DIR": str(tmp / "state")}


def copy_service(catalog: Path, owner: str | None) -> None:
    shutil.rmtree(catalog / SERVICE, ignore_errors=True)
    shutil.copytree(ROOT / "catalog" / SERVICE, catalog / SERVICE, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    path = catalog / SERVICE / "deliverable.yaml"
    spec = yaml.safe_load(path.read_text())
    spec.pop("depends_on", None)
    spec["owner"] = owner or spec["owner"]
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PLATFORM_"))}


def import_dagster(env: dict[str, str]) -> float:
    code = "import time; t = time.perf_counter(); import dagster; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                check=True).stdout)


def load(env: dict[str, str], module: str, attribute: str) -> dict[str, float]:
    proc = subprocess.run([sys.executable, str(LOAD_ONCE), module, "--attribute", attribute], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"loading {module}:{attribute} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def deliver(env: dict[str, str], location: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-team-delivery-") as folder:
        home = Path(folder)
        shutil.copyfile(ROOT / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
        run_env = {**env, "DAGSTER_HOME": str(home), "PLATFORM_STATE_DIR": str(home / "state")}
        selection = ",".join(f"{SERVICE}/{stage}" for stage in STAGES)
        start = time.perf_counter()
        done = subprocess.run([str(Path(sys.executable).parent / "dagster"), "asset", "materialize", *location,
                               "--select", selection], cwd=ROOT, env=run_env, capture_output=True, text=True,
                              timeout=900)
        wall = time.perf_counter() - start
        try:
            if done.returncode != 0:
                raise SystemExit(f"the delivery failed ({location}):\n{(done.stdout + done.stderr)[-4000:]}")
            return {"wall": wall, **event_figures(home)}
        finally:
            stop_deployments(run_env)


def median(values: list[float]) -> float:
    return statistics.median(values)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--deliveries", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-teams-") as folder:
        tmp = Path(folder)
        (tmp / "org").mkdir()
        (tmp / "demo").mkdir()
        org, small = organisation(tmp / "org", args.size), demo(tmp / "demo")
        load(org, "platform_assets.team_locations", ATTRIBUTE)  # untimed: bytecode and file caches
        figures: dict[str, list] = {"import_dagster": [], "team_location": [], "single_location": []}
        for _ in range(args.repeat):
            figures["import_dagster"].append(import_dagster(org))
            team = load(org, "platform_assets.team_locations", ATTRIBUTE)
            figures["team_location"].append(team["load_s"])
            figures["single_location"].append(load(org, "platform_assets.definitions", "defs")["load_s"])
        figures["team_assets"] = team["assets"]
        single = {k: v for k, v in org.items() if k != "PLATFORM_CONFIG"}  # the project's platform.yaml: single
        figures["delivery_org"], figures["delivery_demo"], figures["delivery_org_single"] = [], [], []
        for _ in range(args.deliveries):  # alternate, so drift on the machine touches all alike
            figures["delivery_org"].append(deliver(org, ["-m", "platform_assets.team_locations", "-a", ATTRIBUTE]))
            figures["delivery_demo"].append(deliver(small, ["-m", "platform_assets.definitions"]))
            figures["delivery_org_single"].append(deliver(single, ["-m", "platform_assets.definitions"]))
    floor = median(figures["import_dagster"])
    team_s, single_s = median(figures["team_location"]), median(figures["single_location"])
    org_wall, org_work = (median([d[k] for d in figures["delivery_org"]]) for k in ("wall", "work"))
    demo_wall, demo_work = (median([d[k] for d in figures["delivery_demo"]]) for k in ("wall", "work"))
    before_wall, before_work = (median([d[k] for d in figures["delivery_org_single"]]) for k in ("wall", "work"))
    print(f"organisation: {args.size} services in 10 teams + {SERVICE} in {TEAM} ({figures['team_assets']} assets "
          "in its location, its upstreams in others included)")
    print(f"import dagster           {floor:6.2f} s")
    print(f"team location (team_03)  {team_s:6.2f} s  {team_s / floor:5.2f}x import dagster (target < 3x)")
    print(f"single location (all)    {single_s:6.2f} s  {single_s / floor:5.2f}x import dagster")
    print(f"delivery, demo           {demo_wall:6.1f} s  (work {demo_work:.1f} s)")
    print(f"delivery, org per team   {org_wall:6.1f} s  (work {org_work:.1f} s)  {org_wall / demo_wall:5.2f}x "
          "the demo's (target <= 1.5x)")
    print(f"delivery, org as one     {before_wall:6.1f} s  (work {before_work:.1f} s)  {before_wall / demo_wall:5.2f}x "
          "the demo's")
    print(f"RATIO team_location {team_s / floor:.2f}")
    print(f"RATIO delivery {org_wall / demo_wall:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
