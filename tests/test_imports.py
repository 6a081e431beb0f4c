"""Every module of the platform imports on its own, as the first import of a fresh interpreter.

That is how run workers, step processes, sandbox children and serving processes start (`-m
platform_assets.kinds.model.runner`, `platform_assets.kinds.webapp.server:app`), and it is where an
import cycle shows: a cycle that happens to resolve in one import order fails in another.
"""

from __future__ import annotations

import json
import subprocess
import sys

from platform_assets.settings import PROJECT_ROOT

PACKAGES = ("platform_assets", "resources", "sensors")


def modules() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            if "template" in path.relative_to(PROJECT_ROOT).parts:
                continue  # `deliver new` templates: placeholders, not modules
            parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


# One interpreter imports Dagster, the third-party load every platform module shares, and none of
# ours; each module is then imported first in a process forked from it. A cycle among our modules
# shows as in a cold interpreter, without paying Python's start and Dagster's import per module.
FORKING_IMPORTER = """
import json, os, sys, traceback
import dagster
for module in json.loads(sys.argv[1]):
    assert not any(m.split('.')[0] in {packages} for m in sys.modules), 'the parent imported a module of ours'
    pid = os.fork()
    if pid == 0:
        try:
            __import__(module)
        except BaseException:
            print(json.dumps([module, traceback.format_exc().strip().splitlines()[-1]]), flush=True)
            os._exit(1)
        os._exit(0)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code not in (0, 1):  # 1 printed its traceback; anything else died without one (a signal)
        print(json.dumps([module, f'the import ended with status {code}']), flush=True)
""".replace("{packages}", repr(set(PACKAGES)))


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    names = modules()
    assert "platform_assets.kinds.registry" in names and len(names) > 100
    completed = subprocess.run([sys.executable, "-c", FORKING_IMPORTER, json.dumps(names)], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    failures = [": ".join(json.loads(line)) for line in completed.stdout.splitlines() if line.startswith("[")]
    assert failures == []
