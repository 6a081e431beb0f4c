"""Stable endpoints (issue 13): clients of a deliverable's stable URL lose nothing while it is
redeployed, and a downstream service keeps answering through an upstream's redeploys without
being redeployed itself. Real processes throughout: the demo service built, installed and run by
uvicorn behind the environment's gateway, clients over real HTTP."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import yaml

from platform_assets.records import ROLLBACK_TAG, TRIGGER_TAG
from tests.conftest import Platform

SERVICE, EDGE = "recommendations-api", "recommendations-edge"
APP = Path("src/recommendations_api/app.py")
UPSTREAM_CALL = '''

@app.get("/upstream-health")
def upstream_health() -> dict:
    """What the upstream it depends on says of itself, through its stable URL."""
    import json
    import urllib.request

    with urllib.request.urlopen(os.environ["RECOMMENDATIONS_API_URL"] + "/health", timeout=10) as answer:
        return json.loads(answer.read())
'''


def through_prod(name: str) -> list[str]:
    return [f"{name}/build", f"{name}/evaluate", f"{name}/staging", f"{name}/prod"]


@dataclass
class Client:
    """Calls `url` in a loop until stopped, keeping every failure and the versions it was answered by."""

    url: str
    version_of: str  # the JSON field holding the version that answered
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=30) as response:
                    version = json.loads(response.read())[self.version_of]
                if not self.versions or self.versions[-1] != version:
                    self.versions.append(version)
            except Exception as exc:  # every kind of failure counts as a lost request
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.requests += 1
            time.sleep(0.02)


def add_downstream(platform: Platform) -> None:
    """A copy of the demo service that depends on it and calls it on /upstream-health."""
    folder = Path(shutil.copytree(platform.catalog / SERVICE, platform.catalog / EDGE))
    spec = yaml.safe_load((folder / "deliverable.yaml").read_text())
    spec.update(name=EDGE, depends_on=[SERVICE])
    (folder / "deliverable.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (folder / APP).write_text((folder / APP).read_text() + UPSTREAM_CALL)


def bump(platform: Platform, version: str) -> None:
    app = platform.catalog / SERVICE / APP
    text = app.read_text()
    current = text.split('version="', 1)[1].split('"', 1)[0]
    app.write_text(text.replace(f'version="{current}"', f'version="{version}"'))


def test_clients_of_stable_urls_lose_nothing_across_five_deploys_and_a_downstream_keeps_answering(
        platform: Platform) -> None:
    add_downstream(platform)
    assert platform.materialize(*through_prod(SERVICE)).success
    assert platform.materialize(*through_prod(EDGE)).success
    v1, stable = platform.latest(f"{SERVICE}/prod")["version"], platform.latest(f"{SERVICE}/prod")["url"]
    edge = platform.current(EDGE, "prod")
    assert stable.endswith(f"/{SERVICE}") and platform.current(SERVICE, "prod")["direct_url"] != stable
    assert platform.latest(f"{SERVICE}/prod")["direct_url"] == platform.current(SERVICE, "prod")["direct_url"]

    clients = [Client(f"{stable}/health", "version"), Client(f"{edge['url']}/upstream-health", "version")]
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    prod = [dg.AssetKey([SERVICE, "prod"])]
    deployed, urls = [], []
    try:
        for number in ("1.3.1", "1.3.2"):  # two new versions through staging and prod
            bump(platform, number)
            assert platform.materialize(*through_prod(SERVICE)).success
            deployed.append(platform.latest(f"{SERVICE}/prod")["version"])
            urls.append(platform.latest(f"{SERVICE}/prod")["url"])
        v2, v3 = deployed
        for back_to in (v2, v1):  # two rollbacks
            assert platform.run_request(dg.RunRequest(asset_selection=prod, tags={
                ROLLBACK_TAG: back_to, TRIGGER_TAG: "cli-rollback"})).success
            deployed.append(platform.latest(f"{SERVICE}/prod")["version"])
            urls.append(platform.latest(f"{SERVICE}/prod")["url"])
        assert platform.run_request(dg.RunRequest(asset_selection=prod, tags={TRIGGER_TAG: "cli-promote"})).success
        deployed.append(platform.latest(f"{SERVICE}/prod")["version"])
        urls.append(platform.latest(f"{SERVICE}/prod")["url"])
        time.sleep(1)
    finally:
        for client in clients:
            client.stop.set()
        for thread in threads:
            thread.join(timeout=60)

    assert deployed == [v2, v3, v2, v1, v3] and len({v1, v2, v3}) == 3
    assert set(urls) == {stable}, "the stable URL never changes"
    for client in clients:
        assert client.failures == [], f"{client.url}: {len(client.failures)} of {client.requests} lost"
        assert client.requests > 50 and client.versions[0] == v1 and client.versions[-1] == v3, client.versions
    assert set(clients[0].versions) == {v1, v2, v3}
    assert platform.current(EDGE, "prod")["pid"] == edge["pid"], "the downstream was never redeployed"
    print(", ".join(f"{c.url}: {c.requests} requests, 0 lost, versions {c.versions}" for c in clients))
