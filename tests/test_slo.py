"""The SLO verification window against a real process behind the wrapper, and `slo:` in a spec."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from platform_assets.catalog import load_catalog
from platform_assets.serving_metrics import served_command
from platform_assets.settings import PROJECT_ROOT, load_settings
from platform_assets.slo import Slo, verify
from resources.deploy_target import ProcessLaunch
from resources.local_process import LocalProcessTarget
from tests.conftest import copy_deliverable


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    target = LocalProcessTarget(environment="test", root=str(tmp_path_factory.mktemp("deployments")))
    command, env = served_command(sys.executable, "tests.serving_app:app", "127.0.0.1", "{port}")
    yield target.deploy(ProcessLaunch(deliverable="served", version="1", command=command, health_path="/health",
                                      workdir=PROJECT_ROOT, env=env, startup_timeout_s=60))["url"]
    target.stop("served")


def slo(**fields: object) -> Slo:
    return Slo.model_validate({"window_s": 1, **fields})


def test_a_window_of_good_answers_holds_and_records_its_figures(served: str) -> None:
    held, summary, record = verify(slo(error_ratio_max=0.01, p95_ms_max=250, smoke=[
        {"path": "/items/7"}, {"path": "/items/404", "expect_status": 404}, {"path": "/health"}]), served, {})

    assert held, summary
    assert summary.startswith("SLO held (") and record["breaches"] == []
    assert record["requests"] >= 10 and record["error_ratio"] == 0 and record["p95_ms"] < 250
    assert record["requests"] % 2 == 0, "/health is the platform's route, not traffic: two requests a round"


def test_errors_slowness_and_unexpected_statuses_are_breaches(served: str) -> None:
    _, _, errors = verify(slo(error_ratio_max=0.01, smoke=[{"path": "/items/1"}, {"path": "/boom"}]), served, {})
    slow_held, slow, _ = verify(slo(p95_ms_max=100, smoke=[{"path": "/slow?seconds=0.3"}]), served, {})

    assert errors["error_ratio"] == pytest.approx(0.5) and not slow_held
    assert errors["breaches"][0] == "error ratio 0.5000 > 0.01"
    assert errors["breaches"][1].startswith("GET /boom answered 500 ") and errors["breaches"][1].endswith(
        "x, expected 200")
    assert "p95" in slow and "> 100 ms" in slow


def test_no_metrics_is_no_verification() -> None:
    held, summary, record = verify(slo(), "http://127.0.0.1:9", {})
    assert (held, record) == (False, {"verified": False}) and "no metrics at http://127.0.0.1:9/-/metrics" in summary


def test_a_bad_slo_names_the_file_and_field(tmp_path: Path) -> None:
    folder = copy_deliverable("recommendations-api", tmp_path, standalone=True)
    spec = yaml.safe_load((folder / "deliverable.yaml").read_text())
    spec["slo"] = {"error_ratio_max": 2, "smoke": [{"path": "items"}]}
    (folder / "deliverable.yaml").write_text(yaml.safe_dump(spec))

    errors = [str(e) for e in load_catalog(tmp_path, load_settings()).errors]

    assert any("slo.error_ratio_max" in e and str(folder / "deliverable.yaml") in e for e in errors), errors
    assert any("slo.smoke.0.path" in e for e in errors), errors


def test_the_stable_url_answers_after_an_app_error_closed_the_upstream_connection(served: str) -> None:
    """uvicorn closes a connection after an unhandled exception; the gateway's pooled connection to
    it fails on reuse, and an idempotent request is sent again instead of answering 500."""
    import httpx

    assert "/served" in served, "the target serves this behind its gateway"
    for _ in range(3):
        assert httpx.get(f"{served}/boom").status_code == 500
        assert httpx.get(f"{served}/items/3").json() == {"item_id": 3}
