"""The web-app kind end to end on the demo's storefront: npm ci, its tests and its Vite build in the
sandbox, gated on size and on a smoke render in Debian's Chromium, published to staging and prod
behind each environment's stable address. Opened in real Chromium (Playwright, never a browser of
its own), each environment's page shows the recommendations of that environment's
recommendations-api: one bundle, the environment's config written at deploy. A page that throws
fails the smoke gate with the browser's own error and leaves what is deployed alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Platform, copy_deliverable

APP, API = "storefront", "recommendations-api"
STAGES = ("build", "evaluate", "staging", "prod")
CHROMIUM = Path("/usr/bin/chromium")


def deliver(platform: Platform, name: str) -> None:
    result = platform.materialize(*(f"{name}/{stage}" for stage in STAGES))
    failures = [e.step_failure_data.error.message if e.is_step_failure else e.message  # type: ignore[union-attr]
                for e in result.all_events if e.is_failure]
    assert result.success, failures


def opened(url: str) -> tuple[str, list[str], list[str]]:
    """What a person sees at `url` in Chromium: the page's footer, the products listed, console errors."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto(url, wait_until="networkidle")
        page.wait_for_selector("#recommendations li", timeout=20_000)
        seen = page.inner_text("#source"), page.locator("#recommendations li").all_inner_texts(), errors
        browser.close()
    return seen


@pytest.mark.slow
def test_each_environment_serves_the_bundle_calling_its_own_api(platform: Platform) -> None:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run scripts/install-test-deps.sh (as root)"
    copy_deliverable(APP, platform.catalog)
    deliver(platform, API)
    deliver(platform, APP)

    build = platform.latest(f"{APP}/build")
    assert build["tests"] == "passed" and 0 < build["bundle_gzip_bytes"] < 50 * 1024, build
    evaluate = platform.latest(f"{APP}/evaluate")
    assert "with no console error (recommendations-api in staging)" in evaluate["gate/smoke"], evaluate
    api_version = platform.latest(f"{API}/prod")["version"]
    for env in ("staging", "prod"):
        record = platform.latest(f"{APP}/{env}")
        assert record["version"] == build["version"] and record["url"].endswith(f"/{APP}/"), record
        source, items, errors = opened(record["url"] + "?customer=c-42")
        assert source == f"recommendations-api {api_version} in {env}", source
        assert len(items) == 3 and not errors, (items, errors)

    main = platform.catalog / APP / "src" / "main.js"
    main.write_text(main.read_text().replace("main();", "throw new Error('storefront broke');"))
    result = platform.materialize(f"{APP}/build", f"{APP}/evaluate", f"{APP}/staging")
    assert not result.success, "a failed gate stops the version"
    evaluate = platform.latest(f"{APP}/evaluate")
    assert evaluate["version"] != build["version"] and "storefront broke" in evaluate["gate/smoke"], evaluate
    assert platform.latest(f"{APP}/staging")["version"] == build["version"], "staging keeps what it served"
