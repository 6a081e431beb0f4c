"""The README's everyday commands, in the order written, on a fresh instance, as a new user runs them.

Every ```bash block of its "Everyday commands" section runs as one bash script from the project
root, with `set -e`, so the first command that fails fails the test. Two things differ from a
person's shell: `$PWD/.dagster_home` is a fresh folder of the test's own, and the catalog and the
dbt project are copies (PLATFORM_CATALOG_DIR, PLATFORM_DBT_PROJECT_DIR), so the test changes
nothing in the checkout. A block that says it needs `make dev` runs while tests/dagster_server.py
serves `dagster dev` on the same instance, with PLATFORM_WEBSERVER_URL pointing at it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest

from platform_assets.settings import PROJECT_ROOT
from tests.dagster_server import dagster_dev

README = PROJECT_ROOT / "README.md"
SECTION = "## Everyday commands"


def everyday_blocks(text: str) -> list[str]:
    """The bash blocks of the section, in order."""
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def run_block(block: str, env: dict[str, str], home: Path, log: Path) -> subprocess.CompletedProcess:
    script = "set -euo pipefail\nset -x\n" + block.replace("$PWD/.dagster_home", str(home))
    with log.open("a") as out:
        out.write(f"\n===== block =====\n{block}\n")
    completed = subprocess.run(["bash", "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                               timeout=1500)
    with log.open("a") as out:
        out.write(completed.stdout + completed.stderr)
    return completed


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_readme_everyday_commands_work_in_order_on_a_fresh_instance(tmp_path: Path) -> None:
    home, catalog, dbt = tmp_path / "dagster_home", tmp_path / "catalog", tmp_path / "dbt_project"
    shutil.copytree(PROJECT_ROOT / "catalog", catalog, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    shutil.copytree(PROJECT_ROOT / "dbt_project", dbt, ignore=shutil.ignore_patterns("logs", "*.duckdb"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PLATFORM_"))}
    env.update(PLATFORM_CATALOG_DIR=str(catalog), PLATFORM_DBT_PROJECT_DIR=str(dbt))
    blocks = everyday_blocks(README.read_text())
    assert len(blocks) == 2 and "make dev" in blocks[1].splitlines()[0], "the README's layout changed"
    log = tmp_path / "readme.log"
    try:
        first = run_block(blocks[0], env, home, log)
        assert first.returncode == 0, first.stderr[-4000:]
        assert (home / "dagster.yaml").is_file(), "deliver run makes a fresh instance as make dev does"
        status = json.loads(subprocess.run([str(PROJECT_ROOT / ".venv/bin/deliver"), "status", "--json"],
                                           env={**env, "DAGSTER_HOME": str(home)}, capture_output=True,
                                           text=True, check=True).stdout)
        with dagster_dev(home, env, tmp_path / "dagster-dev.log") as server:
            second = run_block(blocks[1], {**env, "DAGSTER_HOME": str(home), "PLATFORM_WEBSERVER_URL": server.url},
                               home, log)
    finally:
        subprocess.run([str(PROJECT_ROOT / ".venv/bin/deliver"), "down"], env={**env, "DAGSTER_HOME": str(home)},
                       capture_output=True, timeout=120)
    assert second.returncode == 0, second.stderr[-4000:]
    assert "recommendations-api/prod  ok  prod serves" in first.stdout
    assert "customer-features: build -> evaluate -> staging -> prod (needed by churn-model)" in first.stdout
    prod = {row["name"]: row["versions"]["prod"] for row in status}
    assert all(prod.values()), f"something is not in prod: {prod}"
    assert (home / "platform/reports/prod/segmentation-report/current/index.html").is_file()
    assert "storefront/prod  ok  prod serves" in first.stdout and "/storefront/" in first.stdout
    with duckdb.connect(str(home / "platform/warehouse.duckdb"), read_only=True) as db:
        [(scores,)] = db.sql("select count(distinct customer_id) from prod_ml_team.churn_scores").fetchall()
        [(customers,)] = db.sql("select count(*) from prod_analytics.customer_features").fetchall()
    assert scores == customers > 0, (scores, customers)
    assert "promote of recommendations-api in prod" in second.stdout and "succeeded" in second.stdout
    assert "stopped recommendations-api in prod" in second.stdout
