"""The environment a child process running deliverable code gets. Standard library only, so the
dbt wrapper (dbt_child.py), which starts for every dbt command, pays no import of Dagster."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

INHERITED = ("PATH", "LANG", "LC_ALL", "TZ")


def minimal_env(home: Path, extra: Mapping[str, str] | None = None,
                environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """PATH and locale, a HOME of its own, and `extra`; nothing else of the platform's environment
    (DAGSTER_HOME, cloud keys, passwords and tokens stay behind)."""
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    env = {key: environ[key] for key in INHERITED if key in environ}
    env.update(HOME=str(home), TMPDIR=str(home / "tmp"), PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1")
    env.update(extra or {})
    return env
