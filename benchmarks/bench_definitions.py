"""How much does our catalog-driven code location cost to load, compared with bare Dagster?

Usage: .venv/bin/python benchmarks/bench_definitions.py [--sizes 1000] [--repeat 3] [--json PATH] [--check]

Cases: `demo` (the real catalog/ folder) and `synthetic-N` for each N in --sizes (N generated service
deliverables: ~10 teams, ~30% with one depends_on on an earlier deliverable, no cycles).

"Ours" is `platform_assets.definitions` (YAML catalog -> pydantic specs -> asset factory) with
PLATFORM_CATALOG_DIR pointed at the case's catalog. "Bare" is a generated module with one literal,
hand-written `@dg.asset(...)` function per single asset, one literal `@dg.multi_asset(name=...,
specs=[dg.AssetSpec(...), ...], check_specs=[...], can_subset=..., required_resource_keys=...,
pool=..., op_tags=...)` per multi-asset (the demo has one: `warehouse_dbt`, the dbt models and tests
that ours builds from dbt's manifest.json at load) and a literal `dg.Definitions(...)`:
  - it is generated from a description of *our* loaded definitions (bench_describe.py), so it has
    the same op names, output and input names, asset keys, deps, check_specs (same names, target
    assets, blocking flags, descriptions), group names, owners, kinds, descriptions, tags, op_tags,
    pools, can_subset, metadata (TableSchema column schemas included, column by column) and
    required_resource_keys, and the same Definitions shape (assets, resources and the executor when
    it is one of Dagster's own, e.g. `dg.multiprocess_executor`; nothing else);
  - resources: we keep `required_resource_keys` on both sides. The bare module defines trivial
    ConfigurableResources with the same class names and config fields (annotations, defaults)
    under the same keys (artifact_store, warehouse, deploy_target_<env>), constructed with the same
    arguments and values (EnvVars stay EnvVars), so Dagster validates resources the same way for
    both;
  - asset bodies are `return dg.MaterializeResult()` (`yield from ()` for multi-assets): bodies
    never run at load time;
  - before timing, the bare module is loaded and described too, and both descriptions must be equal
    (same number of assets and checks, same deps, ...); otherwise the benchmark stops.
  - both sides run from bytecode, as a deployed code server does: children get a private
    PYTHONPYCACHEPREFIX (PYTHONDONTWRITEBYTECODE is dropped for them) that the untimed describe
    loads fill, so neither side pays compilation in the timed runs and nothing is written into
    the source tree or the venv.

Each measurement is a fresh `python benchmarks/load_once.py` subprocess that starts its clock before
any import, imports the module, and forces the full load a code server does: validate_loadable
(get_repository_def + load_all_definitions) and resolve_asset_graph; see load_once.py. The repository
snapshot the webserver requests has no public API; it is measured separately ("ratio+snap" column,
times in the JSON) with the private RepositorySnap and does not enter the verdict. Ours and bare run
interleaved (alternating which goes first) and the median of --repeat runs is reported; the minimum
is shown too, since noise only ever adds time.

The verdict compares the synthetic-1000 ratio (or the largest size if 1000 is not asked for) with the
budget. Ours must also import none of the heavy libraries listed in load_once.HEAVY_PACKAGES.
Exit code is 0 unless --check is given; then 1 when over budget or a heavy library was imported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench_catalog import teams_file, write_catalog
from bench_codegen import generate_module

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
LOAD_ONCE = BENCH_DIR / "load_once.py"
OURS_MODULE = "platform_assets.definitions"
DEFAULT_BUDGET = 1.3
VERDICT_SIZE = 1000
# Wall and CPU ratios further apart than this mean the wall clock was disturbed (see report()).
NOISE_TOLERANCE = 0.1


@dataclass(frozen=True)
class Case:
    """One catalog to load; `env` points our code location at it."""

    name: str
    deliverables: int
    env: dict[str, str]
    bare_dir: Path
    bare_module: str


@dataclass
class Side:
    """The runs of one module (ours or bare) for one case."""

    load_s: list[float] = field(default_factory=list)
    load_cpu_s: list[float] = field(default_factory=list)
    import_s: list[float] = field(default_factory=list)
    snapshot_s: list[float] = field(default_factory=list)
    heavy: dict[str, int] = field(default_factory=dict)
    info: dict[str, int] = field(default_factory=dict)

    def add(self, run: dict[str, Any]) -> None:
        self.load_s.append(run["load_s"])
        self.load_cpu_s.append(run["load_cpu_s"])
        self.import_s.append(run["import_s"])
        if run["snapshot_s"] is not None:
            self.snapshot_s.append(run["snapshot_s"])
        self.heavy.update(run["heavy"])
        self.info.update(run["info"])

    @property
    def load(self) -> float:
        return statistics.median(self.load_s)

    @property
    def best(self) -> float:
        return min(self.load_s)

    @property
    def cpu(self) -> float:
        return statistics.median(self.load_cpu_s)

    @property
    def snapshot(self) -> float | None:
        return statistics.median(self.snapshot_s) if self.snapshot_s else None


@dataclass
class Result:
    case: str
    deliverables: int
    assets: int
    checks: int
    ours: Side
    bare: Side

    @property
    def ratio(self) -> float:
        return self.ours.load / self.bare.load

    @property
    def best_ratio(self) -> float:
        return self.ours.best / self.bare.best

    @property
    def cpu_ratio(self) -> float:
        return self.ours.cpu / self.bare.cpu

    @property
    def snapshot_ratio(self) -> float | None:
        ours, bare = self.ours.snapshot, self.bare.snapshot
        return ours / bare if ours is not None and bare is not None else None


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=[str(VERDICT_SIZE)],
        help="synthetic catalog sizes (space- or comma-separated), default 1000",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per module and case (median)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="allowed ours/bare ratio")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--check", action="store_true", help="exit 1 when over budget or a heavy import")
    args = parser.parse_args(argv)
    args.sizes = sorted({int(size) for item in args.sizes for size in item.split(",") if size})
    if args.repeat < 1 or any(size < 1 for size in args.sizes):
        parser.error("--repeat and --sizes must be positive")
    return args


def run_child(
    module: str, env: dict[str, str], paths: list[Path], describe: Path | None = None
) -> dict[str, Any]:
    """One fresh interpreter loading `module`; returns what load_once.py printed."""
    command = [sys.executable, str(LOAD_ONCE), module, *(arg for p in paths for arg in ("--path", str(p)))]
    if describe:
        command += ["--describe", str(describe)]
    proc = subprocess.run(command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"loading {module} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def case_env(catalog: Path, state: Path, pycache: Path) -> dict[str, str]:
    """The caller's environment with our code location pointed at `catalog` (and its teams registry,
    when bench_catalog wrote one beside it), bytecode cached.

    Both sides must read byte-compiled modules, as a deployed code server does: with
    PYTHONDONTWRITEBYTECODE set (it is in some dev shells) the 70,000-line bare module would be
    compiled on every run and ours would not be compiled much at all. Bytecode goes to a private
    PYTHONPYCACHEPREFIX so the benchmark writes nothing into the source tree or the venv.
    """
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    if teams_file(catalog).exists():
        env["PLATFORM_TEAMS_FILE"] = str(teams_file(catalog))
    return {
        **env,
        "PLATFORM_CATALOG_DIR": str(catalog),
        "PLATFORM_STATE_DIR": str(state),
        "PYTHONPYCACHEPREFIX": str(pycache),
    }


def prepare_case(name: str, deliverables: int, catalog: Path, workdir: Path, pycache: Path) -> Case:
    """Describe our definitions for `catalog`, generate the bare module, and check they match.

    These two untimed loads also warm the bytecode cache and the file cache for the timed runs.
    """
    env = case_env(catalog, workdir / "state", pycache)
    bare_dir = workdir / f"bare_{name.replace('-', '_')}"
    bare_dir.mkdir(parents=True)
    case = Case(name, deliverables, env, bare_dir, f"bare_defs_{name.replace('-', '_')}")
    ours_description = workdir / f"{name}-ours.json"
    run_child(OURS_MODULE, env, [], describe=ours_description)
    description = json.loads(ours_description.read_text())
    source = generate_module(description, f"same assets as {OURS_MODULE} for the {name} catalog")
    (bare_dir / f"{case.bare_module}.py").write_text(source)
    bare_description = workdir / f"{name}-bare.json"
    run_child(case.bare_module, env, [bare_dir], describe=bare_description)
    assert_same(description, json.loads(bare_description.read_text()), name)
    return case


def assert_same(ours: dict[str, Any], bare: dict[str, Any], case: str) -> None:
    """Stop the benchmark if the bare module does not define exactly what ours does (in any order)."""
    ours["assets"].sort(key=lambda asset: asset["op_name"])
    bare["assets"].sort(key=lambda asset: asset["op_name"])
    if ours == bare:
        return
    diffs = [k for k in ("resources", "executor", "other") if ours[k] != bare[k]]
    if len(ours["assets"]) != len(bare["assets"]):
        diffs.append(f"asset definition count {len(ours['assets'])} vs {len(bare['assets'])}")
    for mine, theirs in zip(ours["assets"], bare["assets"], strict=False):
        if mine != theirs:
            fields = [k for k in mine if mine[k] != theirs.get(k)]
            specs = [
                f"{'/'.join(spec['key'])}: {[k for k in spec if spec[k] != other.get(k)]}"
                for spec, other in zip(mine["specs"], theirs.get("specs", []), strict=False)
                if spec != other
            ]
            diffs.append(f"op {mine['op_name']}: {fields}" + (f" (specs {'; '.join(specs[:3])})" if specs else ""))
            break
    raise SystemExit(f"{case}: the bare module differs from ours: {'; '.join(diffs)}")


def measure(case: Case, repeat: int) -> Result:
    """`repeat` interleaved runs of ours and bare, alternating which one goes first."""
    ours, bare = Side(), Side()
    runs = {
        "ours": lambda: run_child(OURS_MODULE, case.env, []),
        "bare": lambda: run_child(case.bare_module, case.env, [case.bare_dir]),
    }
    counts: dict[str, tuple[int, int]] = {}
    for index in range(repeat):
        order = ("ours", "bare") if index % 2 == 0 else ("bare", "ours")
        for side in order:
            run = runs[side]()
            (ours if side == "ours" else bare).add(run)
            counts[side] = (run["assets"], run["checks"])
    if counts["ours"] != counts["bare"]:
        raise SystemExit(f"{case.name}: assets/checks differ: ours {counts['ours']}, bare {counts['bare']}")
    assets, checks = counts["ours"]
    return Result(case.name, case.deliverables, assets, checks, ours, bare)


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "n/a"


def print_table(results: list[Result]) -> None:
    header = (
        "case",
        "assets",
        "checks",
        "ours (s)",
        "bare (s)",
        "ratio",
        "cpu ratio",
        "min ratio",
        "ratio+snap",
    )
    rows = [header] + [
        (
            r.case,
            str(r.assets),
            str(r.checks),
            _seconds(r.ours.load),
            _seconds(r.bare.load),
            _ratio(r.ratio),
            _ratio(r.cpu_ratio),
            _ratio(r.best_ratio),
            _ratio(r.snapshot_ratio),
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def _packages(found: dict[str, int]) -> str:
    return ", ".join(f"{name} ({count} modules)" for name, count in found.items()) or "none"


def verdict_result(results: list[Result]) -> Result:
    synthetic = [r for r in results if r.case.startswith("synthetic-")]
    return next((r for r in synthetic if r.deliverables == VERDICT_SIZE), synthetic[-1])


def report(results: list[Result], budget: float) -> tuple[bool, bool]:
    """Print the table and the machine-readable lines; returns (within budget, no heavy import)."""
    print_table(results)
    print()
    for r in results:
        print(f"RATIO {r.case} {r.ratio:.3f}")
    for r in results:
        print(
            f"HEAVY {r.case} ours: {_packages(r.ours.heavy)}; bare: {_packages(r.bare.heavy)}"
            f"; info (not heavy) ours: {_packages(r.ours.info)}"
        )
    for r in results:
        if abs(r.ratio - r.cpu_ratio) > NOISE_TOLERANCE:
            print(
                f"NOTE {r.case}: wall ratio {r.ratio:.2f}x but CPU ratio {r.cpu_ratio:.2f}x; other work on "
                "the machine distorted the wall clock, rerun with a larger --repeat"
            )
    judged = verdict_result(results)
    within = judged.ratio <= budget
    light = not any(r.ours.heavy for r in results)
    status = "OK" if within else "OVER BUDGET"
    print(f"VERDICT {judged.case} {judged.ratio:.2f}x (budget {budget:.2f}x): {status}")
    return within, light


def _side_json(side: Side) -> dict[str, Any]:
    summary = {
        "median_load_s": side.load,
        "min_load_s": side.best,
        "median_load_cpu_s": side.cpu,
        "median_snapshot_s": side.snapshot,
    }
    return {**asdict(side), **summary}


def write_json(
    path: Path, results: list[Result], args: argparse.Namespace, within: bool, light: bool
) -> None:
    import dagster

    payload = {
        "dagster": dagster.__version__,
        "python": platform.python_version(),
        "repeat": args.repeat,
        "budget": args.budget,
        "verdict": {"case": verdict_result(results).case, "within_budget": within, "no_heavy_imports": light},
        "cases": [
            {
                **{k: v for k, v in asdict(r).items() if k not in ("ours", "bare")},
                "ratio": r.ratio,
                "cpu_ratio": r.cpu_ratio,
                "min_ratio": r.best_ratio,
                "snapshot_ratio": r.snapshot_ratio,
                "ours": _side_json(r.ours),
                "bare": _side_json(r.bare),
            }
            for r in results
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-definitions-") as tmp:
        workdir = Path(tmp)
        catalogs = [("demo", PROJECT_ROOT / "catalog")] + [
            (f"synthetic-{n}", write_catalog(workdir / f"catalog-{n}", n)) for n in args.sizes
        ]
        for name, catalog in catalogs:
            deliverables = len(list(catalog.glob("*/deliverable.yaml")))
            print(
                f"# {name}: {deliverables} deliverable(s), preparing and checking the bare module...",
                flush=True,
            )
            case = prepare_case(name, deliverables, catalog, workdir / name, workdir / "pycache")
            results.append(measure(case, args.repeat))
    print()
    within, light = report(results, args.budget)
    if args.json:
        write_json(args.json, results, args, within, light)
    return 1 if args.check and not (within and light) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
