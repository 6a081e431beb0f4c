"""The Dagster UI in real Chromium: what serves in each environment, and why a gate or a deploy failed.

Playwright drives Debian's Chromium (scripts/install-test-deps.sh installs it; Playwright never
downloads a browser of its own). The instance holds a delivery of the demo service, a newer
version that started in staging but not in prod, and a third whose contract breaks clients.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import Platform
from tests.dagster_server import DagsterServer, dagster_dev

CHROMIUM = Path("/usr/bin/chromium")
# The flags this machine's notes give for headless Chromium on a closed network.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
SERVICE = "recommendations-api"
APP = "src/recommendations_api/app.py"


def stages(*names: str) -> list[str]:
    return [f"{SERVICE}/{name}" for name in names]


def edit(platform: Platform, old: str, new: str) -> None:
    path = platform.catalog / SERVICE / APP
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))


@pytest.fixture
def histories(platform: Platform) -> Platform:
    assert platform.materialize(*stages("build", "evaluate", "staging", "prod")).success
    edit(platform, 'app = FastAPI(title="recommendations-api", version="1.3.0")',
         "from contextlib import asynccontextmanager\n\n\n@asynccontextmanager\nasync def lifespan(_app):\n"
         "    if os.environ.get('PLATFORM_ENVIRONMENT') == 'prod':\n"
         "        raise RuntimeError('RECS_SIGNING_KEY is required in prod')\n    yield\n\n\n"
         'app = FastAPI(title="recommendations-api", version="1.3.0", lifespan=lifespan)')
    assert platform.materialize(*stages("build", "evaluate", "staging")).success
    assert not platform.materialize(*stages("prod")).success, "the new version does not start in prod"
    edit(platform, "    name: str\n", "    title: str\n")
    edit(platform, "name=PRODUCTS[pid]", "title=PRODUCTS[pid]")
    assert not platform.materialize(*stages("build", "evaluate")).success, "the contract breaks clients"
    spec_file = platform.catalog / SERVICE / "deliverable.yaml"  # the daemon must not promote while we look
    spec = yaml.safe_load(spec_file.read_text())
    spec["promotion"]["prod"] = {"mode": "manual", "approvers": ["alice"]}
    spec_file.write_text(yaml.safe_dump(spec))
    return platform


@pytest.fixture
def ui(histories: Platform, tmp_path: Path) -> Iterator[DagsterServer]:
    with dagster_dev(histories.home, dict(os.environ), tmp_path / "dagster-dev.log") as server:
        yield server


def test_asset_pages_show_the_serving_versions_and_the_reasons(histories: Platform, ui: DagsterServer,
                                                               tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run scripts/install-test-deps.sh (as root)"
    staging, prod = (histories.latest(f"{SERVICE}/{env}") for env in ("staging", "prod"))
    assert staging["version"] != prod["version"] and prod["kept"] is True
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        browser = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=FLAGS, viewport={"width": 1600, "height": 1000})
        page = browser.new_page()

        def text_of(path: str, expect: str, click: str | None = None) -> str:
            page.goto(f"{ui.url}{path}")
            if click:
                page.get_by_text(click, exact=True).first.click()
            page.get_by_text(expect).first.wait_for(timeout=60_000)
            page.screenshot(path=str(tmp_path / f"{path.strip('/').replace('/', '_')}.png"), full_page=True)
            return page.inner_text("body")

        staging_page = text_of(f"/assets/{SERVICE}/staging", staging["version"])
        prod_page = text_of(f"/assets/{SERVICE}/prod", prod["version"])
        graph = text_of("/locations/platform/asset-groups/recs_team/lineage", "1 / 2 Passed")
        gate = text_of(f"/assets/{SERVICE}/evaluate?view=checks", "removed", click="api_compatibility")
        deploy = text_of(f"/assets/{SERVICE}/prod?view=checks", "did not start healthy", click="last_deploy")
        browser.close()

    assert "Latest materialization" in staging_page and "Latest materialization" in prod_page
    assert "attempted_version" in prod_page and staging["version"] in prod_page, "and what did not replace it"
    assert "Failed" not in graph and graph.count("Materialized") == 4, "no environment looks down"
    assert "field 'items[].name' removed" in gate and "bump the major version of info.version" in gate
    assert "RECS_SIGNING_KEY is required in prod" in deploy
    assert f"prod keeps serving {prod['version']}" in deploy
