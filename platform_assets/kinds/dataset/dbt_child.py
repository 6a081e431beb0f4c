"""`platform-dbt`: dbt as the platform runs it, the executable dagster-dbt's DbtCliResource starts.

A dbt project's Jinja and macros are a deliverable's code (they can read any variable with
`env_var`), and dagster-dbt hands dbt a copy of the whole step environment. This wrapper replaces
that with a minimal one before it execs dbt: PATH, the locale, a HOME of its own, dbt's own `DBT_*`
settings and the variables named in `PLATFORM_DBT_KEEP` (the warehouse settings its profile reads,
set by dbt_runtime.warehouse_env); model tokens, cloud keys, identity secrets and DAGSTER_HOME stay
behind. The warehouse credential itself is what dbt needs to build, so it is passed.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from platform_assets.child_env import minimal_env

KEEP_ENV = "PLATFORM_DBT_KEEP"


def dbt_env(environ: Mapping[str, str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """What dbt sees of `environ`: the minimal environment, dbt's own settings, the kept names, `extra`."""
    keep = {name for name in environ.get(KEEP_ENV, "").split(",") if name}
    home = Path(tempfile.gettempdir()) / f"platform-dbt-home-{os.getuid()}"
    passed = {k: v for k, v in environ.items() if k.startswith("DBT_") or k in keep}
    return minimal_env(home, {**passed, **(extra or {})}, environ)


def main() -> None:
    dbt = str(Path(sys.executable).parent / "dbt")
    os.execve(dbt, [dbt, *sys.argv[1:]], dbt_env(os.environ))


if __name__ == "__main__":
    main()
