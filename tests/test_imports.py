"""Every module of the platform imports on its own, as the first import of a fresh interpreter.

That is how run workers, step processes, sandbox children and serving processes start (`-m
platform_assets.kinds.model.runner`, `platform_assets.kinds.webapp.server:app`), and it is where an
import cycle shows: a cycle that happens to resolve in one import order fails in another.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

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


def imports_alone(module: str) -> str | None:
    completed = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=PROJECT_ROOT, capture_output=True,
                               text=True, timeout=120)
    return None if completed.returncode == 0 else f"{module}: {completed.stderr.strip().splitlines()[-1]}"


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    names = modules()
    assert "platform_assets.kinds.registry" in names and len(names) > 100
    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = [failure for failure in pool.map(imports_alone, names) if failure]
    assert failures == []
