"""How long does one promotion sensor tick take over a large catalog?

Usage: .venv/bin/python benchmarks/bench_promotion.py [--size 1000] [--repeat 5] [--json PATH]

A synthetic catalog of --size deliverables (bench_catalog.py) on a fresh SQLite instance in a
temporary DAGSTER_HOME. Every deliverable has a healthy version in the first environment, so the
first tick plans --size promotions (the worst case); the next tick, with that cursor, finds them
already requested. Both are timed --repeat times on the real sensor (`build_sensor_context`);
medians are reported. The issue's target: a tick under one second at 1,000 deliverables.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_catalog import teams_file, write_catalog


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-promotion-") as tmp:
        os.environ["PLATFORM_STATE_DIR"] = str(Path(tmp) / "state")
        import dagster as dg

        from platform_assets.catalog import load_catalog
        from platform_assets.records import env_key
        from platform_assets.settings import load_settings
        from sensors.promotion import promotion_sensors

        settings = load_settings()
        root = write_catalog(Path(tmp) / "catalog", args.size)
        os.environ["PLATFORM_TEAMS_FILE"] = str(teams_file(root))
        catalog = load_catalog(root, settings)
        first_env = settings.environment_names[0]
        (Path(tmp) / "home").mkdir()
        with dg.instance_for_test(temp_dir=str(Path(tmp) / "home")) as instance:
            for deliverable in catalog:
                instance.report_runless_asset_event(dg.AssetMaterialization(
                    asset_key=env_key(deliverable.name, first_env),
                    metadata={"version": "v1", "environment": first_env, "healthy": True}))
            sensor = promotion_sensors(catalog, settings)[0]
            first, steady, requested = [], [], 0
            for _ in range(args.repeat):
                start = time.perf_counter()
                result = sensor(dg.build_sensor_context(instance=instance))
                first.append(time.perf_counter() - start)
                requested = len(result.run_requests)
                start = time.perf_counter()
                again = sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor))
                steady.append(time.perf_counter() - start)
                assert not again.run_requests, "a tick over the same state requested promotions again"
    report = {"deliverables": args.size, "promotions_planned": requested,
              "first_tick_s": statistics.median(first), "steady_tick_s": statistics.median(steady),
              "target_s": 1.0}
    print(f"promotion sensor, {args.size} deliverables: first tick {report['first_tick_s']:.3f}s "
          f"({requested} promotions), unchanged state {report['steady_tick_s']:.3f}s "
          f"(median of {args.repeat}; target < 1s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
