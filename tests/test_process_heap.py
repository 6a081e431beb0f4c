"""A process that loaded a code location, or ran a `deliver` command, leaves its heap to the
operating system at exit instead of walking it once more (process_heap.py)."""

from __future__ import annotations

import subprocess
import sys

from platform_assets.settings import PROJECT_ROOT

# Registered before anything else, so it runs after every other atexit handler, just before the
# interpreter's final collection: it prints how many objects that collection would still walk.
PROBE = """
import atexit, gc, sys
atexit.register(lambda: print("at-exit", len(gc.get_objects()), file=sys.stderr))
{body}
print("frozen", gc.get_freeze_count())
"""


def probe(body: str) -> dict[str, int]:
    completed = subprocess.run([sys.executable, "-c", PROBE.format(body=body)], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = (completed.stdout + completed.stderr).splitlines()
    pairs = (line.split() for line in lines if line.startswith(("frozen", "at-exit")))
    return {key: int(value) for key, value in pairs}


def test_loading_the_location_freezes_what_it_loaded_and_leaves_nothing_to_collect_at_exit() -> None:
    loaded = probe("import platform_assets.definitions")
    assert loaded["frozen"] > 100_000  # Dagster and the demo catalog's definitions
    assert loaded["at-exit"] < 1_000
    bare = probe("import dagster")  # the same interpreter without our location: the walk it saves
    assert bare["frozen"] == 0
    assert bare["at-exit"] > 50_000


def test_a_deliver_command_leaves_nothing_to_collect_at_exit() -> None:
    # `validate` never imports Dagster itself; the probe does, as most commands do
    ran = probe("import dagster\nfrom platform_assets.cli import main\nmain(['validate'])")
    assert ran["frozen"] == 0  # nothing frozen while it ran: only at exit
    assert ran["at-exit"] < 1_000
