"""What the executor's forkserver imports once per run (code_location.executor), so that each step
forks with it already loaded instead of loading it again before its first line.

A step's process opens the run's instance, loads the code location's repository and plans its step
before its first log line. Importing only the location's module (what Dagster preloads by default)
leaves the instance's storages (SQLAlchemy, Alembic, Dagster's SQL storages: about half a second)
and the repository's build to every step; this module does both once (opening the instance once
imports its storages). The modules it adds are the ones every step imports anyway, so the
forkserver's own start grows by less than one step saves.
"""

from __future__ import annotations

import atexit
import os
import sys

import dagster as dg

from platform_assets.workspace import LOCATION_ENV, SINGLE_MODULE, TEAM_MODULE


def warm_instance(home: str | None) -> None:
    """Open and close the instance in `home` (DAGSTER_HOME) once: that imports its storages' modules
    (SQLAlchemy, Alembic, Dagster's SQL storages), so a step's process only connects. Nothing stays
    open across the fork."""
    if home:  # otherwise an ephemeral instance: a step has nothing to open but memory
        with dg.DagsterInstance.from_config(home):
            pass


def preloaded_locations() -> list[dg.Definitions]:
    """The definitions of the location module preloaded before this one (code_location.executor names
    the run's own): the single location's, or the team's that its module built from the environment."""
    found = [sys.modules[SINGLE_MODULE].defs] if SINGLE_MODULE in sys.modules else []
    team_module, team = sys.modules.get(TEAM_MODULE), os.environ.get(LOCATION_ENV)
    if team_module is not None and team:
        found.append(getattr(team_module, team))
    return found


def in_forkserver() -> bool:
    """Whether this process is multiprocessing's forkserver (CPython starts it with this command) or
    forked from it (its children end with `os._exit`, so its atexit handlers never run there)."""
    return "from multiprocessing.forkserver import main" in " ".join(sys.orig_argv)


def preload() -> None:
    warm_instance(os.environ.get("DAGSTER_HOME"))
    # Both cached (on the Definitions, in the repository), so every step reuses them: the repository
    # and the asset job that a materialization's steps subset.
    for definitions in preloaded_locations():
        definitions.get_repository_def().get_implicit_global_asset_job_def()
    if in_forkserver():
        # The forkserver holds the run's stdout and stderr until it exits, after the run's own process;
        # tearing down an interpreter with all of Dagster loaded keeps whoever reads them (a pipe, CI,
        # `subprocess.run`) waiting about 0.7 s. It writes nothing and its steps exit on their own, so
        # it leaves at once (atexit runs before the interpreter's teardown).
        atexit.register(os._exit, 0)


preload()
