"""The serving wrapper in a real uvicorn process: what it records, and what it leaves to the app."""

from __future__ import annotations

import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from platform_assets.serving_metrics import METRICS_PATH, figures, scrape, served_command
from platform_assets.settings import PROJECT_ROOT
from resources.deploy_target import ProcessLaunch
from resources.local_process import LocalProcessTarget


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """tests/serving_app.py behind the wrapper, started as deploys start it (a local process)."""
    target = LocalProcessTarget(environment="test", root=str(tmp_path / "deployments"))
    command, env = served_command(sys.executable, "tests.serving_app:app", "127.0.0.1", "{port}")
    launch = ProcessLaunch(deliverable="served", version="1", command=command, health_path="/health",
                           workdir=PROJECT_ROOT, env=env, startup_timeout_s=60)
    yield target.deploy(launch)["url"]
    target.stop("served")


def metric_lines(url: str) -> list[str]:
    status, text = get(url + METRICS_PATH)
    assert status == 200
    return [line for line in text.splitlines() if line.startswith("platform_http_")]


def test_requests_are_recorded_by_route_template_and_status(served: str) -> None:
    before = scrape(served)
    for item_id in (1, 2, 3, 404):
        get(f"{served}/items/{item_id}")
    get(f"{served}/boom")
    get(f"{served}/no/such/path/{time.time()}")

    lines = metric_lines(served)
    after = scrape(served)

    counted = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines}
    assert counted['platform_http_requests_total{method="GET",route="/items/{item_id}",status="200"}'] == 3
    assert counted['platform_http_requests_total{method="GET",route="/items/{item_id}",status="404"}'] == 1
    assert counted['platform_http_requests_total{method="GET",route="/boom",status="500"}'] == 1
    assert counted['platform_http_requests_total{method="GET",route="<unmatched>",status="404"}'] == 1
    assert counted['platform_http_request_duration_seconds_count{route="/items/{item_id}"}'] == 4
    assert not [line for line in lines if "/items/1" in line or "/no/such" in line], "raw paths never become labels"
    seen = figures(before, after)
    assert (seen.requests, seen.error_ratio) == (6, pytest.approx(1 / 6))
    assert seen.p50_s is not None and seen.p50_s < 0.25


def test_the_apps_own_routes_are_left_alone_and_in_flight_is_counted(served: str) -> None:
    assert get(f"{served}/metrics") == (200, "the app's own metrics\n")
    assert get(f"{served}/health")[0] == 200

    slow = [threading.Thread(target=get, args=(f"{served}/slow?seconds=1.5",)) for _ in range(3)]
    for thread in slow:
        thread.start()
    time.sleep(0.7)
    during = scrape(served)
    for thread in slow:
        thread.join()

    assert during is not None and during.in_flight == 3
    assert scrape(served).in_flight == 0
    assert 'route="/metrics"' in "\n".join(metric_lines(served)), "the app's /metrics is an app route like any"
