"""`deliver`: the platform's own command line. `run` delivers here, in this process; `promote`,
`rollback` and `approve` submit runs to the webserver."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from platform_assets.catalog import Catalog, load_catalog
from platform_assets.errors import ActionRefused
from platform_assets.process_heap import freeze_at_exit
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

    _, problems = all_kind_assets(catalog, settings)
    for problem in problems:
        print(problem)
    files = len({error.file for error in catalog.errors})
    print(f"{len(catalog)} deliverable(s) valid, {len(catalog.errors)} error(s) in {files} file(s), "
          f"{len(problems)} kind error(s) [catalog: {catalog.root}; teams: {teams_path(settings)}]")
    return 1 if catalog.errors or problems else 0


def cmd_new(args: argparse.Namespace) -> int:
    from platform_assets.identity.requester import registry
    from platform_assets.scaffold import scaffold

    settings = load_settings()
    root = catalog_dir(settings)
    load_catalog(root, settings)  # registers platform.yaml's own kinds, whose templates count too
    folder = scaffold(args.kind, args.name, args.owner, root, registry(settings))
    catalog = load_catalog(root, settings)
    from platform_assets.factory import all_kind_assets  # imports dagster: only for the kinds' checks

    problems = [str(error) for error in catalog.errors if error.file.is_relative_to(folder)]
    problems += [p for p in all_kind_assets(catalog, settings)[1] if str(folder / "deliverable.yaml") in p]
    for problem in problems:
        print(problem)
    print(f"created {folder} ({args.kind}); next: `deliver validate`, then `deliver run {args.name}` "
          "(or let the daemon deliver it)")
    return 1 if problems else 0


def _instance(create: bool = False):
    """The instance of DAGSTER_HOME; `create` makes a missing one with the local config, as `make dev` does."""
    import shutil

    import dagster as dg

    if not os.environ.get("DAGSTER_HOME"):
        raise SettingsError(
            "DAGSTER_HOME is not set: it names the Dagster instance to read "
            f"(`make dev` uses {PROJECT_ROOT / '.dagster_home'})"
        )
    home = Path(os.environ["DAGSTER_HOME"])
    if create and not (home / "dagster.yaml").exists():
        home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PROJECT_ROOT / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    return dg.DagsterInstance.get()


def cmd_status(args: argparse.Namespace) -> int:
    from platform_assets.delivery_actions import deliverable_named
    from platform_assets.status import collect_status, format_table

    settings = load_settings()
    catalog = load_catalog(catalog_dir(settings), settings)
    if args.name:
        deliverable_named(catalog, args.name)
    with _instance() as instance:
        rows = collect_status(instance, catalog, settings, args.name)
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
    else:
        print(format_table(rows, settings.environment_names))
        if catalog.errors:
            print(f"\n{len(catalog.errors)} spec error(s) left deliverables out; run `deliver validate`")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """Stop the local processes of the embedded default (they outlive `make dev` on purpose) and
    their gateways; each one stopped is recorded as `stopped` on its `live` check."""
    import getpass
    import time

    from platform_assets.delivery_actions import check_environment
    from platform_assets.liveness import STOPPED, Live
    from platform_assets.resources_config import deploy_target

    settings, user = load_settings(), getpass.getuser()
    if args.env:
        check_environment(settings, args.env)
    envs = [settings.environment(args.env)] if args.env else settings.environments
    with _instance() as instance:
        for env in (e for e in envs if e.target == "local"):
            target = deploy_target(settings, env)
            for name in target.deployed_names():
                version = (target.current(name) or {}).get("version")
                if args.name in (None, name) and target.stop(name):
                    live = Live(STOPPED, time.time(), version, detail=f"stopped by `deliver down` ({user})")
                    instance.report_runless_asset_event(live.evaluation(name, env.name))
                    print(f"stopped {name} in {env.name}")
            target.stop_gateway_if_idle()
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
    version = args.version or _awaiting(settings, catalog, args.name, args.env)
    tags, who = requester_tags(settings, "approve", args.name, args.env, version, args.key)
    check_approver(catalog, settings, args.name, args.env, who)
    run_id = submit(settings, _location(settings, catalog, args.name),
                    {**tags, "platform/trigger": "cli-approve", "platform/deliverable": args.name},
                    job=APPROVAL_JOB, run_config=approval_run_config(args.name, args.env, version))
    return _submitted(settings, f"approval of {args.name} {version} for {args.env} by {who}", run_id, args.wait)


def _awaiting(settings: PlatformSettings, catalog: Catalog, name: str, env: str) -> str:
    """The version waiting for `env`: what the previous environment (or evaluate) holds."""
    from platform_assets.delivery_actions import check_environment, deliverable_named
    from platform_assets.records import env_key, evaluate_key, latest

    deliverable_named(catalog, name)
    check_environment(settings, env)
    previous = settings.previous_environment(env)
    key = env_key(name, previous) if previous else evaluate_key(name)
    with _instance() as instance:
        held = latest(instance, key)
    if held is None:
        raise ActionRefused(f"{key.to_user_string()} holds no version of {name} to approve yet")
    return held.version


def _location(settings: PlatformSettings, catalog: Catalog, name: str) -> str:
    from platform_assets.delivery_actions import deliverable_named
    from platform_assets.workspace import location_of

    return location_of(settings, deliverable_named(catalog, name).spec.owner)


def _deploy_run(settings: PlatformSettings, catalog: Catalog, action: str, name: str, env: str,
                version: str | None, key: str | None, wait: bool, extra: dict[str, str]) -> int:
    from platform_assets.delivery_actions import requester_tags
    from platform_assets.records import env_key
    from platform_assets.run_submission import submit

    tags, who = requester_tags(settings, action, name, env, version, key)
    run_id = submit(settings, _location(settings, catalog, name), {**tags, **extra, "platform/deliverable": name},
                    assets=[env_key(name, env)])
    return _submitted(settings, f"{action} of {name} in {env} by {who}", run_id, wait)


def cmd_promote(args: argparse.Namespace) -> int:
    """Promote now: a run of the environment asset (gates, health upstream and approvals apply)."""
    from platform_assets.delivery_actions import check_environment, deliverable_named

    _refuse_as(args)
    settings, catalog = _loaded()
    deliverable_named(catalog, args.name)
    check_environment(settings, args.env)
    return _deploy_run(settings, catalog, "promote", args.name, args.env, None, args.key, args.wait,
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
    return _deploy_run(settings, catalog, "rollback", args.name, args.env, version, args.key, args.wait,
                       {"platform/trigger": "cli-rollback", ROLLBACK_TAG: version})


def _refuse_as(args: argparse.Namespace) -> None:
    if getattr(args, "user", None):
        raise ActionRefused("--as no longer says who you are: the platform verifies it. Locally you are your OS "
                            "user; with identity.mode verified your request is signed with your SSH key "
                            "(--key, PLATFORM_SIGNING_KEY or git's user.signingkey) registered in teams.yaml")


def cmd_run(args: argparse.Namespace, build_tags: dict[str, str] | None = None) -> int:
    """Deliver NAME (and first whatever upstream it lacks) in this process, stage by stage, with
    each stage's outcome and reasons; exit 1 when a stage fails."""
    from platform_assets.delivery_actions import requester_tags
    from platform_assets.delivery_run import deliver, plan

    settings, catalog = _loaded()

    def tags(name: str, env: str | None) -> dict[str, str]:
        if env is None:
            return (build_tags or {}) if name == args.name else {}
        return requester_tags(settings, "promote", name, env, None, args.key)[0]

    with _instance(create=True) as instance:
        stages = plan(instance, catalog, settings, args.name, args.through)
        for name in dict.fromkeys(stage.deliverable for stage in stages):
            mine = [stage for stage in stages if stage.deliverable == name]
            print(f"{name}: {' -> '.join(s.key.path[-1] for s in mine)} ({mine[0].reason})")
        failed = False
        for report in deliver(instance, settings, catalog, stages, tags,
                              lambda stage: print(f"... {stage.key.to_user_string()}", flush=True), args.verbose):
            print(report.text(), flush=True)
            failed = not report.success
    if failed:
        print(f"stopped: fix the cause above, then run `deliver run {args.name}` again", file=sys.stderr)
    return 1 if failed else 0


def cmd_adopt(args: argparse.Namespace) -> int:
    """`deliver run` of a version registered outside the platform: its build adopts that version
    (checked, loaded in the sandbox, scored on the holdout), then the gates and environments follow."""
    from platform_assets.delivery_actions import deliverable_named
    from platform_assets.kinds.registry import get_handler

    _, catalog = _loaded()
    deliverable = deliverable_named(catalog, args.name)
    tags = get_handler(deliverable.kind).adoption_tags(args.version)
    if tags is None:
        raise ActionRefused(f"{args.name} is a {deliverable.kind}: the platform builds it from its sources; "
                            "only kinds with versions made elsewhere (models) can adopt one")
    return cmd_run(args, tags)


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


def cmd_workspace(args: argparse.Namespace) -> int:
    """The code locations platform.yaml's `code_locations` asks for: the workspace of `dagster dev`,
    or (--helm) the chart's user deployments, one per location."""
    import yaml

    from platform_assets.workspace import user_deployments, workspace

    settings, catalog = _loaded()
    if args.helm:
        try:
            values = yaml.safe_load(Path(args.helm).read_text()) or {}
            content = user_deployments(settings, catalog, values)
        except (OSError, yaml.YAMLError, ValueError, AttributeError) as exc:
            raise SettingsError(f"{args.helm}: {exc}; give the chart's values file (deploy/helm/values.yaml)") from exc
        header = (f"# One Dagster user deployment per code location ({settings.code_locations}), generated by "
                  f"`deliver workspace --helm {args.helm}`: pass it after {args.helm} (`-f`).\n")
    else:
        content = workspace(settings, catalog)
        header = f"# Generated by `deliver workspace` from the catalog ({settings.code_locations}); do not edit.\n"
    text = header + yaml.safe_dump(content, sort_keys=False)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deliver", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("validate", help="check platform.yaml and every catalog spec; exit 1 on errors")
    new = commands.add_parser("new", help="a new deliverable in the catalog from its kind's template "
                                          "(validates and delivers as it is)")
    new.add_argument("kind", help="service, model, dataset, notebook or a kind platform.yaml registers")
    new.add_argument("name", help="the deliverable's name (its folder in the catalog)")
    new.add_argument("--owner", help="the owning team (default: your one team in the teams registry)")
    status = commands.add_parser("status", help="per environment: version, live state, stable URL; owner, "
                                                "lineage, the last gate failure")
    status.add_argument("name", nargs="?", help="only this deliverable")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    down = commands.add_parser("down", help="stop locally deployed processes")
    down.add_argument("name", nargs="?", help="only this deliverable")
    down.add_argument("--env", help="only this environment")
    approve = commands.add_parser("approve", help="approve a version for a manual environment (a signed run)")
    approve.add_argument("name")
    approve.add_argument("--version", help="the version (default: the one the previous environment holds)")
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
    run = commands.add_parser("run", help="deliver a deliverable here, stage by stage, with whatever upstream it "
                                          "still lacks; a summary with the reasons per stage")
    run.add_argument("name")
    run.add_argument("--through", help="the last environment to deploy to (default: the last one)")
    run.add_argument("--key", help="the SSH key that signs each deploy (identity.mode verified)")
    run.add_argument("--verbose", action="store_true", help="also print Dagster's event log")
    adopt = commands.add_parser("adopt", help="deliver a version registered outside the platform (an MLflow "
                                              "model version): adopted, gated, promoted, here")
    adopt.add_argument("name")
    adopt.add_argument("--version", required=True, help="the registered version")
    adopt.add_argument("--through", help="the last environment to deploy to (default: the last one)")
    adopt.add_argument("--key", help="the SSH key that signs each deploy (identity.mode verified)")
    adopt.add_argument("--verbose", action="store_true", help="also print Dagster's event log")
    hist = commands.add_parser("history", help="builds, gates, deploys, approvals and rollbacks, newest first")
    hist.add_argument("name")
    hist.add_argument("--limit", type=int, default=100)
    hist.add_argument("--json", action="store_true")
    metrics = commands.add_parser("metrics", help="deployment frequency, lead time, change failure rate, "
                                                   "time to restore (DORA) per deliverable, kind and team")
    metrics.add_argument("--since", default="30d", help="the window: 30d, 12h, ... (default 30d)")
    metrics.add_argument("--json", action="store_true")
    work = commands.add_parser("workspace", help="the code locations of the catalog: workspace.yaml for dagster "
                                                 "dev, or the Helm chart's user deployments (--helm)")
    work.add_argument("--helm", metavar="VALUES", help="the chart's values file whose deployment each one copies")
    work.add_argument("--output", "-o", help="write here instead of printing")
    return parser


COMMANDS = {"validate": cmd_validate, "new": cmd_new, "status": cmd_status, "down": cmd_down, "approve": cmd_approve,
            "promote": cmd_promote, "rollback": cmd_rollback, "run": cmd_run, "adopt": cmd_adopt,
            "history": cmd_history, "metrics": cmd_metrics, "workspace": cmd_workspace}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    freeze_at_exit()  # a command that loaded Dagster would spend 0.4 s at exit collecting it
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
