"""What a step forks with: the executor's forkserver preloads the location and step_preload, so a
step's process finds the instance's storages and the loaded location already imported."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from platform_assets.code_location import preload_modules
from platform_assets.settings import PROJECT_ROOT
from platform_assets.step_preload import in_forkserver, warm_instance
from platform_assets.workspace import SINGLE_MODULE, TEAM_MODULE
from tests.preload_probe import EXPECTED

# A fresh interpreter starts a forkserver with the executor's preload list, as the multiprocess
# executor does, and a process forked from it reports what it found loaded (through a pipe, as the
# executor's children do: a Pool's teardown hung once under the full suite's load).
PROBE = """
import json, multiprocessing, sys
from tests.preload_probe import send_loaded

context = multiprocessing.get_context("forkserver")
context.set_forkserver_preload(json.loads(sys.argv[1]))
before = sorted(m for m in ("sqlalchemy", "alembic", "platform_assets.definitions") if m in sys.modules)
reader, writer = context.Pipe(duplex=False)
child = context.Process(target=send_loaded, args=(writer,))
child.start()
writer.close()
print(json.dumps([before, reader.recv()]), flush=True)
child.join(60)
sys.exit(child.exitcode)
"""


def test_the_executor_preloads_the_location_then_step_preload() -> None:
    assert preload_modules() == [SINGLE_MODULE, "platform_assets.step_preload"]
    assert preload_modules("ml-team") == [TEAM_MODULE, "platform_assets.step_preload"]


def test_the_instance_is_opened_once_where_dagster_yaml_puts_it(tmp_path: Path) -> None:
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.local.yaml", tmp_path / "dagster.yaml")
    warm_instance(str(tmp_path))
    assert (tmp_path / "history" / "runs.db").exists(), "the default storage, SQLite, made its schema"
    warm_instance(None)  # an ephemeral instance: nothing to open
    assert not in_forkserver()


def test_a_forked_step_finds_the_storages_and_the_location_loaded(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_TEAM")}, "DAGSTER_HOME": str(home)}
    completed = subprocess.run([sys.executable, "-c", PROBE, json.dumps(preload_modules())], cwd=PROJECT_ROOT, env=env,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    before, child = json.loads(completed.stdout.splitlines()[-1])
    assert before == [], "the parent loaded none of it itself"
    # A process forked from the forkserver counts as it: such processes end with os._exit, never atexit.
    assert child == {"modules": sorted(EXPECTED), "forkserver": True}
