"""A kind of one's own is one module and one line in platform.yaml: the static-site kind in
tests/fixtures/kinds, which no platform module names, is validated, built, gated and delivered
to prod by the shared stages, and followed by the source sensor."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
import yaml

from platform_assets.catalog import load_catalog
from platform_assets.settings import PROJECT_ROOT, load_settings
from tests.conftest import Platform

PLUGIN = "tests.fixtures.kinds.static_site:StaticSiteHandler"
STAGES = ("build", "evaluate", "staging", "prod")


def with_kinds(platform: Platform, kinds: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = yaml.safe_load((PROJECT_ROOT / "platform.yaml").read_text())
    config["kinds"] = kinds
    config.setdefault("identity", {})["teams_file"] = str(PROJECT_ROOT / "teams.yaml")
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("PLATFORM_CONFIG", str(tmp_path / "platform.yaml"))
    platform.settings = load_settings()


def landing(catalog: Path, page: str | None) -> Path:
    folder = catalog / "landing"
    (folder / "site").mkdir(parents=True, exist_ok=True)
    (folder / "deliverable.yaml").write_text(yaml.safe_dump({
        "name": "landing", "kind": "static-site", "owner": "recs-team", "description": "The landing page"}))
    index = folder / "site" / "index.html"
    if page is None:
        index.unlink(missing_ok=True)
        (folder / "site" / "about.html").write_text("<p>about</p>")
    else:
        index.write_text(page)
    return folder


def page_of(platform: Platform, env: str) -> str:
    with urllib.request.urlopen(f"{platform.latest(f'landing/{env}')['url']}/index.html", timeout=5) as response:
        return response.read().decode()


def test_a_kind_from_outside_the_platform_reaches_prod_through_the_shared_stages_and_sensors(
    platform: Platform, kind_registry: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_kinds(platform, [PLUGIN], tmp_path, monkeypatch)
    landing(platform.catalog, "<h1>Welcome</h1>")
    catalog = load_catalog(platform.catalog, platform.settings)
    first = platform.materialize(*(f"landing/{stage}" for stage in STAGES))
    first_page, first_version = page_of(platform, "prod"), platform.current("landing", "prod")["version"]
    cursors: dict[str, str | None] = {}
    launched: dict[str, bool] = {}
    platform.automate(cursors, launched)  # the source sensor's first tick only notes the folder

    landing(platform.catalog, "<h1>Welcome back, second edition</h1>")  # a source change: the daemon delivers it
    delivered = platform.automate(cursors, launched)
    second_page, second_version = page_of(platform, "prod"), platform.current("landing", "prod")["version"]

    landing(platform.catalog, None)  # no index page: its gate fails, prod keeps what it serves
    refused = platform.automate(cursors, launched)

    assert not catalog.errors, [str(e) for e in catalog.errors]
    assert catalog.deliverables["landing"].kind == "static-site"
    assert first.success, [e for e in first.all_events if e.is_failure]
    assert "Welcome" in first_page
    assert delivered[0].startswith("source:landing:") and len(delivered) >= 2, delivered  # then the promotions
    assert all(launched[key] for key in delivered), launched
    assert "second edition" in second_page and second_version != first_version
    assert len(refused) == 1 and refused[0].startswith("source:landing:"), refused
    assert platform.latest("landing/evaluate")["failed_gates"] == ["has_index"]
    assert platform.current("landing", "prod")["version"] == second_version
    assert "second edition" in page_of(platform, "prod")


def test_a_kind_that_does_not_import_is_one_error_and_the_other_kinds_still_load(
    platform: Platform, kind_registry: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_kinds(platform, ["tests.fixtures.kinds.nowhere:Handler", "platform_assets.specs:Deliverable"],
               tmp_path, monkeypatch)
    landing(platform.catalog, "<h1>hi</h1>")

    catalog = load_catalog(platform.catalog, platform.settings)

    errors = [str(e) for e in catalog.errors]
    assert any("field 'kinds[0]': cannot import 'tests.fixtures.kinds.nowhere:Handler'" in e for e in errors), errors
    assert any("field 'kinds[1]'" in e and "is not a KindHandler subclass" in e for e in errors), errors
    assert any("landing/deliverable.yaml: field 'kind': 'static-site' is not a known kind" in e for e in errors), errors
    assert "recommendations-api" in catalog.deliverables
