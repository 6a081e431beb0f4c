"""`deliver`: the platform's own command line. Runs are started with Dagster's tools."""

from __future__ import annotations

import argparse
import json
import os
import sys

from platform_assets.catalog import Catalog, load_catalog
from platform_assets.errors import ActionRefused
from platform_assets.settings import (
    PROJECT_ROOT,
    PlatformSettings,
    SettingsError,
    catalog_dir,
    load_settings,
    teams_path,
)


def cmd_validate(args: argparse.Namespace) -> int:
    settings = load_settings()
    catalog = load_catalog(catalog_dir(settings), settings)
    for error in catalog.errors:
        print(error)
    files = len({error.file for error in catalog.errors})
    print(f"{len(catalog)} deliverable(s) valid, {len(catalog.errors)} error(s) in {files} file(s) "
          f"[catalog: {catalog.root}; teams: {teams_path(settings)}]")
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


def _loaded() -> tuple[PlatformSettings, Catalog]:
    settings = load_settings()
    return settings, load_catalog(catalog_dir(settings), settings)


def cmd_approve(args: argparse.Namespace) -> int:
    from platform_assets.delivery_actions import approve

    settings, catalog = _loaded()
    with _instance() as instance:
        recorded = approve(instance, catalog, settings, args.name, args.version, args.env, args.user)
    print(f"approved {args.name} {args.version} for {args.env} by {args.user} at {recorded['approved_at']}; "
          "the promotion sensor deploys it on its next tick (or run `deliver promote`)")
    return 0


def _deploy_now(name: str, env: str, tags: dict[str, str]) -> int:
    from platform_assets.definitions import build_definitions
    from platform_assets.delivery_actions import run_deploy_now

    with _instance() as instance:
        result = run_deploy_now(instance, build_definitions(), name, env, tags)
    if result.success:
        print(f"{name} in {env}: run {result.run_id} succeeded")
        return 0
    failure = next((e.message for e in result.all_events if e.is_step_failure), "the run failed")
    print(f"{name} in {env}: run {result.run_id} failed: {failure}", file=sys.stderr)
    return 1


def cmd_promote(args: argparse.Namespace) -> int:
    """The promotion now, in this process; the step still checks gates and approvals."""
    from platform_assets.delivery_actions import check_environment, deliverable_named

    settings, catalog = _loaded()
    deliverable_named(catalog, args.name)
    check_environment(settings, args.env)
    return _deploy_now(args.name, args.env, {"platform/trigger": "cli-promote"})


def cmd_rollback(args: argparse.Namespace) -> int:
    from platform_assets.delivery_actions import check_environment, deliverable_named, rollback_target
    from platform_assets.stages import ROLLBACK_TAG

    settings, catalog = _loaded()
    deliverable_named(catalog, args.name)
    check_environment(settings, args.env)
    with _instance() as instance:
        version = rollback_target(instance, args.name, args.env, args.to)
    print(f"rolling {args.name} in {args.env} back to {version}")
    return _deploy_now(args.name, args.env, {"platform/trigger": "cli-rollback", ROLLBACK_TAG: version})


def cmd_history(args: argparse.Namespace) -> int:
    from platform_assets.delivery_actions import deliverable_named, history

    settings, catalog = _loaded()
    deliverable_named(catalog, args.name)
    with _instance() as instance:
        entries = history(instance, settings, args.name, args.limit)
    if args.json:
        print(json.dumps([e.__dict__ for e in entries], indent=2))
    else:
        print("\n".join(e.line() for e in entries) or f"no history for {args.name} yet")
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
    approve = commands.add_parser("approve", help="approve a version for a manual environment")
    approve.add_argument("name")
    approve.add_argument("--version", required=True)
    approve.add_argument("--env", required=True)
    approve.add_argument("--as", dest="user", required=True, help="the approver (listed in the spec)")
    promote = commands.add_parser("promote", help="promote to an environment now (gates, approvals apply)")
    promote.add_argument("name")
    promote.add_argument("--env", required=True)
    rollback = commands.add_parser("rollback", help="redeploy a version that was healthy in the environment")
    rollback.add_argument("name")
    rollback.add_argument("--env", required=True)
    rollback.add_argument("--to", help="the version (default: the last healthy one before the current)")
    hist = commands.add_parser("history", help="builds, gates, deploys, approvals and rollbacks, newest first")
    hist.add_argument("name")
    hist.add_argument("--limit", type=int, default=100)
    hist.add_argument("--json", action="store_true")
    return parser


COMMANDS = {"validate": cmd_validate, "status": cmd_status, "down": cmd_down, "approve": cmd_approve,
            "promote": cmd_promote, "rollback": cmd_rollback, "history": cmd_history}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ActionRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
