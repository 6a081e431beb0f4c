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
    from platform_assets.factory import all_kind_assets  # imports dagster: only for the kinds' checks

    _, problems = all_kind_assets(catalog)
    for problem in problems:
        print(problem)
    files = len({error.file for error in catalog.errors})
    print(f"{len(catalog)} deliverable(s) valid, {len(catalog.errors)} error(s) in {files} file(s), "
          f"{len(problems)} kind error(s) [catalog: {catalog.root}; teams: {teams_path(settings)}]")
    return 1 if catalog.errors or problems else 0


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


def _submitted(settings: PlatformSettings, what: str, run_id: str, wait: bool) -> int:
    """Say where the run is; with --wait follow it and print how it ended."""
    from platform_assets.run_submission import follow, run_url

    print(f"{what}: run {run_id} queued ({run_url(settings, run_id)})")
    if not wait:
        return 0
    outcome = follow(settings, run_id, on_queued=lambda message: print(f"note: {message}", file=sys.stderr))
    if outcome.status == "SUCCESS":
        print(f"{what}: run {run_id} succeeded")
        return 0
    print(f"{what}: run {run_id} {outcome.status.lower()}", file=sys.stderr)
    for failure in outcome.failures:
        print(f"  {failure}", file=sys.stderr)
    return 1


def cmd_approve(args: argparse.Namespace) -> int:
    """Approve a version for a manual environment: a run of the approval job, signed by you."""
    from platform_assets.approval_job import APPROVAL_JOB, approval_run_config
    from platform_assets.delivery_actions import check_approver, requester_tags
    from platform_assets.run_submission import submit

    _refuse_as(args)
    settings, catalog = _loaded()
    tags, who = requester_tags(settings, "approve", args.name, args.env, args.version, args.key)
    check_approver(catalog, settings, args.name, args.env, who)
    run_id = submit(settings, {**tags, "platform/trigger": "cli-approve", "platform/deliverable": args.name},
                    job=APPROVAL_JOB, run_config=approval_run_config(args.name, args.env, args.version))
    return _submitted(settings, f"approval of {args.name} {args.version} for {args.env} by {who}", run_id, args.wait)


def _deploy_run(settings: PlatformSettings, action: str, name: str, env: str, version: str | None,
                key: str | None, wait: bool, extra: dict[str, str]) -> int:
    from platform_assets.delivery_actions import requester_tags
    from platform_assets.records import env_key
    from platform_assets.run_submission import submit

    tags, who = requester_tags(settings, action, name, env, version, key)
    run_id = submit(settings, {**tags, **extra, "platform/deliverable": name}, assets=[env_key(name, env)])
    return _submitted(settings, f"{action} of {name} in {env} by {who}", run_id, wait)


def cmd_promote(args: argparse.Namespace) -> int:
    """Promote now: a run of the environment asset (gates, health upstream and approvals apply)."""
    from platform_assets.delivery_actions import check_environment, deliverable_named

    _refuse_as(args)
    settings, catalog = _loaded()
    deliverable_named(catalog, args.name)
    check_environment(settings, args.env)
    return _deploy_run(settings, "promote", args.name, args.env, None, args.key, args.wait,
                       {"platform/trigger": "cli-promote"})


def cmd_rollback(args: argparse.Namespace) -> int:
    from platform_assets.delivery_actions import check_environment, deliverable_named, rollback_target
    from platform_assets.records import ROLLBACK_TAG

    _refuse_as(args)
    settings, catalog = _loaded()
    deliverable_named(catalog, args.name)
    check_environment(settings, args.env)
    with _instance() as instance:
        version = rollback_target(instance, args.name, args.env, args.to)
    return _deploy_run(settings, "rollback", args.name, args.env, version, args.key, args.wait,
                       {"platform/trigger": "cli-rollback", ROLLBACK_TAG: version})


def _refuse_as(args: argparse.Namespace) -> None:
    if getattr(args, "user", None):
        raise ActionRefused("--as no longer says who you are: the platform verifies it. Locally you are your OS "
                            "user; with identity.mode verified your request is signed with your SSH key "
                            "(--key, PLATFORM_SIGNING_KEY or git's user.signingkey) registered in teams.yaml")


def cmd_history(args: argparse.Namespace) -> int:
    from platform_assets.delivery_actions import deliverable_named, history

    settings, catalog = _loaded()
    deliverable_named(catalog, args.name)
    with _instance() as instance:
        entries = history(instance, catalog, settings, args.name, args.limit)
    if args.json:
        print(json.dumps([e.__dict__ for e in entries], indent=2))
    else:
        print("\n".join(e.line() for e in entries) or f"no history for {args.name} yet")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    """DORA's four figures per deliverable, kind and team, from the event log."""
    import time

    from platform_assets.delivery_metrics import delivery_metrics, format_table
    from platform_assets.specs import duration_s

    try:
        window = float(duration_s(args.since))
    except ValueError as exc:
        raise SettingsError(f"--since: {exc}") from exc
    settings, catalog = _loaded()
    now = time.time()
    with _instance() as instance:
        tables = delivery_metrics(instance, catalog, settings, now - window, now)
    if args.json:
        print(json.dumps({group: [f.as_dict() for f in figures] for group, figures in tables.items()}, indent=2))
    else:
        print(f"the last {args.since}, in {settings.last_environment}\n")
        print("\n\n".join(format_table(figures, group) for group, figures in tables.items()))
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
    approve = commands.add_parser("approve", help="approve a version for a manual environment (a signed run)")
    approve.add_argument("name")
    approve.add_argument("--version", required=True)
    approve.add_argument("--env", required=True)
    promote = commands.add_parser("promote", help="promote to an environment now (a run: gates, approvals apply)")
    promote.add_argument("name")
    promote.add_argument("--env", required=True)
    rollback = commands.add_parser("rollback", help="redeploy a version that was healthy in the environment")
    rollback.add_argument("name")
    rollback.add_argument("--env", required=True)
    rollback.add_argument("--to", help="the version (default: the last healthy one before the current)")
    for action in (approve, promote, rollback):
        action.add_argument("--wait", action="store_true", help="follow the run and print how it ended")
        action.add_argument("--key", help="the SSH key that signs the request (identity.mode verified)")
        action.add_argument("--as", dest="user", help=argparse.SUPPRESS)
    hist = commands.add_parser("history", help="builds, gates, deploys, approvals and rollbacks, newest first")
    hist.add_argument("name")
    hist.add_argument("--limit", type=int, default=100)
    hist.add_argument("--json", action="store_true")
    metrics = commands.add_parser("metrics", help="deployment frequency, lead time, change failure rate, "
                                                   "time to restore (DORA) per deliverable, kind and team")
    metrics.add_argument("--since", default="30d", help="the window: 30d, 12h, ... (default 30d)")
    metrics.add_argument("--json", action="store_true")
    return parser


COMMANDS = {"validate": cmd_validate, "status": cmd_status, "down": cmd_down, "approve": cmd_approve,
            "promote": cmd_promote, "rollback": cmd_rollback, "history": cmd_history, "metrics": cmd_metrics}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`deliver history x | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ActionRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
