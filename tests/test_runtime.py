"""Liveness and supervision (issue 13): the runtime sensor's tick against real local processes
(tests/served_app.py, which exposes the serving wrapper's metrics) and against the Kubernetes API
stand-in (tests/k8s_api_server.py, the only mock: no cluster runs here), the `live` check it
records, the restart policy, `deliver status` and `deliver down`."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
import yaml

from platform_assets.catalog import Catalog, load_catalog
from platform_assets.factory import build_assets, live_checks
from platform_assets.liveness import DOWN, RESTARTING, STOPPED, UP, latest_live, live_key
from platform_assets.records import evaluate_key
from platform_assets.resources_config import platform_resources
from platform_assets.settings import PROJECT_ROOT, RuntimeConfig, load_settings
from platform_assets.status import collect_status
from platform_assets.supervision import Seen, supervise
from resources.deploy_target import ProcessLaunch, probe
from resources.local_process import LocalProcessTarget
from resources.process_control import alive
from sensors.runtime import runtime_tick
from tests.conftest import Platform, cli, record_deploy, record_from_a_run, status_json
from tests.k8s_api_server import APPLY, FakeApiServer

SERVICE = "recommendations-api"


def served_launch(version: str, workdir: Path) -> ProcessLaunch:
    return ProcessLaunch(deliverable=SERVICE, version=version, workdir=workdir, health_path="/health",
                         command=[sys.executable, str(PROJECT_ROOT / "tests" / "served_app.py"), "{port}"],
                         env={"PLATFORM_VERSION": version}, startup_timeout_s=20)


def ticked(platform: Platform, cursor: str | None, **runtime: float) -> tuple[list[dg.AssetCheckEvaluation], str]:
    """One sensor tick, its evaluations written as the daemon writes a sensor's asset events."""
    settings = platform.settings.model_copy(update={"runtime": RuntimeConfig(**runtime)})
    events, cursor = runtime_tick(platform.instance, load_catalog_of(platform), settings, cursor, lambda _: None)
    for event in events:
        platform.instance.report_runless_asset_event(event)
    return events, cursor


def load_catalog_of(platform: Platform) -> Catalog:
    return load_catalog(platform.catalog, platform.settings)


def states(events: list[dg.AssetCheckEvaluation]) -> list[tuple[str, str]]:
    return [(e.asset_key.to_user_string(), e.metadata["state"].value) for e in events]


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_until(check, what: str, deadline_s: float = 30) -> None:
    end = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_dead_process_is_restarted_at_once_then_with_backoff_then_left_down() -> None:
    policy = RuntimeConfig(max_restarts=3, restart_window_s=600, backoff_s=5, backoff_max_s=60)
    dead = Seen(deployment="v1@t0", version="v1", running=False, healthy=False, detail="process 7 is gone",
                can_restart=True, restarts=0)
    memory, timeline = None, []
    for now in (0, 1, 5, 6, 15, 35, 36, 700):
        decision = supervise(dead, memory, policy, now, log_tail="Traceback: boom")
        memory = decision.memory
        timeline.append((now, decision.restart, decision.state, [r.state for r in decision.records]))
    assert timeline == [
        (0, True, RESTARTING, [DOWN, RESTARTING]),  # at once: recorded as down, then restarting
        (1, False, RESTARTING, []),  # backoff: 5 s before the second restart
        (5, True, RESTARTING, [DOWN, RESTARTING]),
        (6, False, RESTARTING, []),  # then 10 s
        (15, True, RESTARTING, [DOWN, RESTARTING]),
        (35, False, DOWN, [DOWN]),  # three restarts in the window: left down
        (36, False, DOWN, []),
        (700, False, DOWN, []),  # the window has passed, but it stays down until the next deploy
    ]
    assert "left down until the next deploy" in decision.detail and "Traceback: boom" in decision.detail
    redeployed = supervise(Seen(deployment="v2@t1", version="v2", running=True, healthy=True, detail="HTTP 200",
                                can_restart=True, restarts=0), memory, policy, 40)
    assert [(r.state, r.version) for r in redeployed.records] == [(UP, "v2")], "a new deploy starts afresh"


def test_a_killed_process_is_restarted_recorded_and_its_figures_are_on_the_check(platform: Platform) -> None:
    target = LocalProcessTarget(environment="prod")
    deployed = target.deploy(served_launch("v1", platform.home))
    stable = deployed["url"]
    assert stable == f"{target.gateway().base_url()}/{SERVICE}" and deployed["direct_url"] != stable

    events, cursor = ticked(platform, None, record_every_s=1)
    assert states(events) == [(f"{SERVICE}/prod", UP)]
    statuses = [get(f"{stable}/work") for _ in range(9)] + [get(f"{stable}/work?status=500")]
    assert statuses == [200] * 9 + [500], "the stable URL reaches the version through the gateway"
    time.sleep(1.1)
    events, cursor = ticked(platform, cursor, record_every_s=1)
    [periodic] = events
    figures = {k: periodic.metadata[k].value for k in ("requests", "error_ratio", "p50_ms", "p95_ms", "rate_per_s")}
    assert figures["requests"] == 10 and figures["error_ratio"] == 0.1 and figures["p95_ms"] >= figures["p50_ms"] > 0

    os.kill(deployed["pid"], signal.SIGKILL)
    wait_until(lambda: not alive(deployed["pid"]), "the killed process to be gone")
    events, cursor = ticked(platform, cursor, record_every_s=60)
    assert states(events) == [(f"{SERVICE}/prod", DOWN), (f"{SERVICE}/prod", RESTARTING)]
    assert "is gone" in events[0].metadata["detail"].value
    restarted = target.current(SERVICE)
    assert restarted["pid"] != deployed["pid"] and restarted["restarts"] == 1 and restarted["url"] == stable
    wait_until(lambda: probe(restarted["health_url"])[0], "the restarted process to be healthy")
    events, cursor = ticked(platform, cursor, record_every_s=60)
    assert states(events) == [(f"{SERVICE}/prod", UP)] and events[0].metadata["restarts"].value == 1
    assert get(f"{stable}/work") == 200, "the same stable URL reaches the restarted process"
    gateway = target.gateway().running()
    os.kill(gateway["pid"], signal.SIGKILL)
    wait_until(lambda: not alive(gateway["pid"]), "the killed gateway to be gone")
    events, cursor = ticked(platform, cursor, record_every_s=60)
    assert events == [] and target.gateway().running()["pid"] != gateway["pid"], "the gateway is started again"
    assert get(f"{stable}/work") == 200, "on the same port"
    _, again = ticked(platform, cursor, record_every_s=60)
    assert not _ and json.loads(again)[f"{SERVICE}/prod"]["s"] == UP, "an unchanged state is not recorded again"

    [row] = collect_status(platform.instance, load_catalog_of(platform), platform.settings)
    assert (row.environments["prod"].live, row.environments["prod"].restarts) == (UP, 1)

    down = cli("down", "--env", "prod")
    assert down.returncode == 0 and f"stopped {SERVICE} in prod" in down.stdout, down.stderr
    [row] = status_json()
    assert row["environments"]["prod"]["live"] == STOPPED and row["environments"]["prod"]["url"] is None
    assert not alive(restarted["pid"]) and target.gateway().running() is None, "down stops the gateway too"
    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(f"{stable}/work", timeout=5)
    assert not isinstance(refused.value, urllib.error.HTTPError), "nothing listens at the stable URL after down"
    events, _ = ticked(platform, cursor, record_every_s=60)
    assert events == [], "nothing deployed: the sensor records nothing over what `deliver down` recorded"


@pytest.fixture
def cluster(platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """prod on a Kubernetes target whose API is the stand-in; staging stays local."""
    server = FakeApiServer(failing_images={"registry.example.com/recommendations-api:bad"})
    host = server.start()
    monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig(tmp_path / "kubeconfig", host)))
    config = yaml.safe_load((PROJECT_ROOT / "platform.yaml").read_text())
    config["environments"][1].update(target="kubernetes", namespace="{team}-{env}", registry="registry.example.com")
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("PLATFORM_CONFIG", str(tmp_path / "platform.yaml"))
    platform.settings = load_settings()
    yield server
    server.stop()


def apply_deployment(server: FakeApiServer, version: str, image: str) -> None:
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": SERVICE, "namespace": "recs-team-prod",
                             "labels": {"app.kubernetes.io/managed-by": "delivery-platform"},
                             "annotations": {"platform.delivery/version": version}},
                "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
    path = f"/apis/apps/v1/namespaces/recs-team-prod/deployments/{SERVICE}"
    assert server.handle("PATCH", path, APPLY, {"fieldManager": ["test"]}, json.dumps(manifest))[0] in (200, 201)


def test_kubernetes_readiness_is_read_from_the_api(platform: Platform, cluster: FakeApiServer) -> None:
    apply_deployment(cluster, "v1", "registry.example.com/recommendations-api:v1")
    events, cursor = ticked(platform, None)
    assert states(events) == [(f"{SERVICE}/prod", UP)]
    assert events[0].metadata["detail"].value == "2 of 2 replica(s) available" and "restarts" not in events[0].metadata

    cluster.handle("DELETE", f"/apis/apps/v1/namespaces/recs-team-prod/deployments/{SERVICE}", "", {}, "")
    record_deploy(platform.instance, SERVICE, "prod", "v1")
    events, cursor = ticked(platform, cursor)
    assert states(events) == [(f"{SERVICE}/prod", DOWN)]
    assert events[0].metadata["detail"].value == f"Deployment {SERVICE} is not in recs-team-prod"

    apply_deployment(cluster, "v2", "registry.example.com/recommendations-api:bad")
    events, cursor = ticked(platform, cursor)
    assert states(events) == [(f"{SERVICE}/prod", DOWN)] and events[0].metadata["version"].value == "v2"
    assert "progress deadline exceeded" in events[0].metadata["detail"].value
    lists = [path for method, path, _, query in cluster.requests
             if method == "GET" and path.endswith("/namespaces/recs-team-prod/deployments")]
    assert len(lists) == 3, "one list call per namespace and tick"
    assert latest_live(platform.instance, [(SERVICE, "prod")])[(SERVICE, "prod")].state == DOWN


def test_executing_the_live_check_probes_the_deployments_now(platform: Platform) -> None:
    LocalProcessTarget(environment="prod").deploy(served_launch("v1", platform.home))
    catalog = load_catalog_of(platform)
    checks = [live_key(SERVICE, "staging"), live_key(SERVICE, "prod")]

    result = dg.materialize([*build_assets(platform.settings, catalog), live_checks(catalog, platform.settings)],
                            selection=dg.AssetSelection.checks(*checks),
                            resources=platform_resources(platform.settings), instance=platform.instance)

    found = {e.asset_key.to_user_string(): (e.passed, e.metadata["state"].value)
             for e in result.get_asset_check_evaluations()}
    assert found == {f"{SERVICE}/prod": (True, UP), f"{SERVICE}/staging": (False, STOPPED)}
    assert platform.current(SERVICE, "prod")["restarts"] == 0, "executing the check restarts nothing"


def test_status_shows_lineage_and_why_the_last_gates_failed(platform: Platform) -> None:
    edge = platform.catalog / "recs-edge"
    edge.mkdir()
    spec = yaml.safe_load((platform.catalog / SERVICE / "deliverable.yaml").read_text())
    (edge / "deliverable.yaml").write_text(yaml.safe_dump({**spec, "name": "recs-edge", "depends_on": [SERVICE]}))
    record_from_a_run(platform.instance, evaluate_key(SERVICE), {
        "version": "v2", "gates_passed": False, "failed_gates": ["api_compatibility"], "gate/tests": "PASS: 3 passed",
        "gate/api_compatibility": "FAIL: 1 breaking change(s) against v1 in prod"})
    record_deploy(platform.instance, SERVICE, "prod", "v1")

    rows = {row.name: row for row in collect_status(platform.instance, load_catalog_of(platform), platform.settings)}

    api = rows[SERVICE]
    assert (api.upstream, api.downstream, rows["recs-edge"].upstream) == ([], ["recs-edge"], [SERVICE])
    assert api.gates == "v2 failed: api_compatibility"
    assert api.gate_failure == "api_compatibility: 1 breaking change(s) against v1 in prod"
    assert (api.environments["prod"].version, api.environments["prod"].live) == ("v1", None)
    table = cli("status", SERVICE)
    assert table.returncode == 0, table.stderr
    assert "downstream: recs-edge" in table.stdout and "deployed (not probed yet)" in table.stdout
    assert "recs-edge  (" not in table.stdout, "status NAME shows that deliverable only"
