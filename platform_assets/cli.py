"""`deliver`: the platform's own command line. Runs are started with Dagster's tools."""

from __future__ import annotations

import argparse
import json
import os
import sys

from platform_assets.catalog import load_catalog
from platform_assets.settings import PROJECT_ROOT, SettingsError, catalog_dir, load_settings


def cmd_validate(args: argparse.Namespace) -> int:
    settings = load_settings()
    catalog = load_catalog(catalog_dir(settings), settings)
    for error in catalog.errors:
        print(error)
    files = len({error.file for error in catalog.errors})
    print(f"{len(catalog)} deliverable(s) valid, {len(catalog.errors)} error(s) in {files} file(s) "
          f"[catalog: {catalog.root}]")
    return 1 if catalog.errors else 0


def _instance():
    import dagster as dg

    if not os.environ.get("DAGSTER_HOME"):
        raise SettingsError(
            "DAGSTER_HOME is not set: it names the Dagster instance to read "
            f"(`make dev` uses {PROJECT_ROOT / '.dagster_home'})"
        )
    return dg.DagsterInstance.get()


def cmd_status(args: argparse.Namespace) -> int:
    from platform_assets.status import collect_status, format_table

    settings = load_settings()
    catalog = load_catalog(catalog_dir(settings), settings)
    with _instance() as instance:
        rows = collect_status(instance, catalog, settings)
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
    else:
        print(format_table(rows, settings.environment_names))
        if catalog.errors:
            print(f"\n{len(catalog.errors)} spec error(s) left deliverables out; run `deliver validate`")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """Stop the local processes of the embedded default (they outlive `make dev` on purpose)."""
    from resources.local_process import LocalProcessTarget

    settings = load_settings()
    envs = [args.env] if args.env else settings.environment_names
    for env in envs:
        target = LocalProcessTarget(environment=env)
        for name in target.deployed_names():
            if args.name in (None, name) and target.stop(name):
                print(f"stopped {name} in {env}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deliver", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("validate", help="check platform.yaml and every catalog spec; exit 1 on errors")
    status = commands.add_parser("status", help="versions per environment, last gates, endpoints")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    down = commands.add_parser("down", help="stop locally deployed processes")
    down.add_argument("name", nargs="?", help="only this deliverable")
    down.add_argument("--env", help="only this environment")
    return parser


COMMANDS = {"validate": cmd_validate, "status": cmd_status, "down": cmd_down}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
