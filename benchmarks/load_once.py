"""Child process of bench_definitions.py: load one code location once, the way a code server does.

The clock starts before anything else is imported, so the import of dagster, of the module and
of everything it pulls in is counted the same way for our platform and for the bare module.

Phases (seconds since the clock started):
  import_s  - `import <module>` (our catalog parsing and asset factory run here, at import)
  load_s    - + `Definitions.validate_loadable(defs)` (= `get_repository_def()` and
              `load_all_definitions()`, what `dagster code-server` does before serving) and
              `defs.resolve_asset_graph()`. Public API only: this is the benchmark's number.
  snapshot_s- + the repository snapshot the webserver asks the code server for
              (`RepositorySnap.from_def(repo, defer_snapshots=True)`, serialized). Dagster has no
              public API for it, so it is measured separately and is `null` if the private import
              moved in another Dagster version.

`load_cpu_s` is the CPU time of the same span: less sensitive to other work on the machine, so a
wall-clock ratio that its CPU ratio does not confirm is noise.

It prints one JSON line on stdout. `--describe PATH` also writes a plain-data description of every
asset (after timing), which the parent uses to generate the bare module and to check that both
modules define the same assets.
"""

import time

START = time.perf_counter()
CPU_START = time.process_time()

import argparse  # noqa: E402  (after the clock starts, on purpose)
import importlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

# Top-level packages that must not be imported just to load definitions. The dbt family is listed
# package by package so the report says exactly which one came in.
HEAVY_PACKAGES = (
    "mlflow",
    "dbt",
    "dbt_common",
    "dbt_adapters",
    "dbt_semantic_interfaces",
    "kubernetes",
    "sklearn",
    "papermill",
    "boto3",
    "pandas",
    "fastapi",
    "uvicorn",
)
# Reported for information only: dagster_dbt itself is light; what matters is whether it pulls dbt.
INFO_PACKAGES = ("dagster_dbt",)


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("module", help="module that exposes the Definitions")
    parser.add_argument("--attribute", default="defs")
    parser.add_argument("--path", action="append", default=[], help="prepend to sys.path")
    parser.add_argument("--describe", help="also write a description of the assets as JSON here")
    return parser.parse_args(argv)


def _loaded_packages(names: tuple[str, ...]) -> dict[str, int]:
    """Which of `names` are in sys.modules, with how many of their modules were imported."""
    counts: dict[str, int] = {}
    for module in list(sys.modules):
        top = module.split(".", 1)[0]
        if top in names:
            counts[top] = counts.get(top, 0) + 1
    return dict(sorted(counts.items()))


def _snapshot(repo: Any) -> bool:
    """Build and serialize the repository snapshot; False if the private API is not there."""
    try:
        from dagster._core.remote_representation.external_data import RepositorySnap
        from dagster._serdes import serialize_value
    except ImportError:
        return False
    serialize_value(RepositorySnap.from_def(repo, defer_snapshots=True))
    return True


def main(argv: list[str]) -> None:
    args = _parse_args(argv)
    sys.path[:0] = args.path
    module = importlib.import_module(args.module)
    import_s = time.perf_counter() - START

    import dagster as dg

    defs: dg.Definitions = getattr(module, args.attribute)
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    load_s = time.perf_counter() - START
    load_cpu_s = time.process_time() - CPU_START

    has_snapshot = _snapshot(defs.get_repository_def())
    snapshot_s = time.perf_counter() - START if has_snapshot else None

    result = {
        "import_s": import_s,
        "load_s": load_s,
        "load_cpu_s": load_cpu_s,
        "snapshot_s": snapshot_s,
        "assets": len(graph.get_all_asset_keys()),
        "checks": len(graph.asset_check_keys),
        "heavy": _loaded_packages(HEAVY_PACKAGES),
        "info": _loaded_packages(INFO_PACKAGES),
    }
    if args.describe:
        from bench_describe import describe_definitions

        with open(args.describe, "w") as out:
            json.dump(describe_definitions(defs), out, indent=1, sort_keys=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
