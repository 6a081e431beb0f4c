"""Storage that scales: instance storage on PostgreSQL (deploy/dagster.yaml), artifacts on S3.

PostgreSQL is a real throw-away server from the Debian packages (tests/postgres_server.py); S3 is
moto's server mode, a local S3-compatible HTTP server that boto3 talks to like to AWS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from platform_assets.resources_config import artifact_store
from platform_assets.settings import PROJECT_ROOT, load_settings
from resources.s3_artifact_store import S3ArtifactStore
from tests.conftest import ARTIFACT_BUCKET as BUCKET
from tests.conftest import Platform, platform_with
from tests.postgres_server import PostgresServer

SERVICE = "recommendations-api"
THROUGH_STAGING = [f"{SERVICE}/build", f"{SERVICE}/evaluate", f"{SERVICE}/staging"]


def production_instance_yaml() -> dict:
    """deploy/dagster.yaml without the parts that need a cluster (run launcher), S3 logs or the
    authenticating proxy (run coordinator)."""
    config = yaml.safe_load((PROJECT_ROOT / "deploy" / "dagster.yaml").read_text())
    config = {key: value for key, value in config.items()
              if key not in ("run_launcher", "compute_logs", "run_coordinator")}
    config["run_monitoring"]["max_resume_run_attempts"] = 0  # only the K8sRunLauncher can resume runs
    return config


@pytest.fixture
def postgres_platform(postgres_db: PostgresServer, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    for name, value in {"DAGSTER_PG_HOST": postgres_db.host, "DAGSTER_PG_PORT": str(postgres_db.port),
                        "DAGSTER_PG_DB": postgres_db.dbname, "DAGSTER_PG_USER": postgres_db.user,
                        "DAGSTER_PG_PASSWORD": postgres_db.password}.items():
        monkeypatch.setenv(name, value)
    yield from platform_with(yaml.safe_dump(production_instance_yaml()), tmp_path, monkeypatch)


def test_service_pipeline_on_postgres_instance_storage(postgres_platform: Platform) -> None:
    instance = postgres_platform.instance
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"

    result = postgres_platform.materialize(*THROUGH_STAGING)

    assert result.success, [e.message for e in result.all_events if e.is_failure]
    version = postgres_platform.latest(f"{SERVICE}/build")["version"]
    assert postgres_platform.latest(f"{SERVICE}/staging")["version"] == version
    [run] = instance.get_runs()
    assert run.is_success
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 1


def test_s3_store_round_trips_json_and_files(s3: S3ArtifactStore, tmp_path: Path) -> None:
    wheel = tmp_path / "svc-1.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel bytes")

    assert not s3.exists("svc", "abc", "build.json")
    s3.put_json("svc", "abc", "build.json", {"version": "abc"})
    stored = s3.put_file("svc", "abc", wheel)

    assert s3.exists("svc", "abc", "build.json") and s3.get_json("svc", "abc", "build.json") == {"version": "abc"}
    assert stored.name == wheel.name and stored.read_bytes() == b"wheel bytes"
    keys = sorted(o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET)["Contents"])
    assert keys == ["artifacts/svc/abc/build.json", f"artifacts/svc/abc/{wheel.name}"]
    fresh = s3.model_copy(update={"cache_dir": str(tmp_path / "other-pod-cache")})
    assert fresh.path("svc", "abc", wheel.name).read_bytes() == b"wheel bytes", "another pod downloads it"
    with pytest.raises(FileNotFoundError, match=re.escape("svc@abc/missing.whl not found in s3://delivery-artifacts")):
        s3.path("svc", "abc", "missing.whl")


def test_artifacts_setting_selects_the_s3_store(tmp_path: Path, s3_endpoint: str) -> None:
    config = yaml.safe_load((PROJECT_ROOT / "platform.yaml").read_text())
    config["artifacts"] = {"type": "s3", "bucket": BUCKET, "prefix": "builds", "endpoint_url": s3_endpoint}
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(config))
    store = artifact_store(load_settings(tmp_path / "platform.yaml"))
    assert isinstance(store, S3ArtifactStore) and store.location() == f"s3://{BUCKET}/builds"


@pytest.fixture
def s3_platform(s3: S3ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    config = yaml.safe_load((PROJECT_ROOT / "platform.yaml").read_text())
    config["artifacts"] = {"type": "s3", "bucket": BUCKET, "endpoint_url": s3.endpoint_url, "region": "us-east-1"}
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("PLATFORM_CONFIG", str(tmp_path / "platform.yaml"))
    yield from platform_with((PROJECT_ROOT / "deploy" / "dagster.local.yaml").read_text(), tmp_path, monkeypatch)


def test_service_pipeline_with_artifacts_on_s3(s3_platform: Platform, s3: S3ArtifactStore) -> None:
    result = s3_platform.materialize(*THROUGH_STAGING)

    assert result.success, [e.message for e in result.all_events if e.is_failure]
    version = s3_platform.latest(f"{SERVICE}/build")["version"]
    keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert {f"artifacts/{SERVICE}/{version}/{name}" for name in ("build.json", "openapi.json", "tests.json")} <= keys
    record = json.loads(s3.client().get_object(Bucket=BUCKET, Key=f"artifacts/{SERVICE}/{version}/build.json")
                        ["Body"].read())
    assert f"artifacts/{SERVICE}/{version}/{record['wheel']}" in keys
    assert s3_platform.latest(f"{SERVICE}/staging")["version"] == version


def test_s3_report_store_switches_current_last_and_keeps_versions(s3: S3ArtifactStore, tmp_path: Path) -> None:
    from resources.s3_report_store import S3ReportStore

    store = S3ReportStore(bucket=BUCKET, endpoint_url=s3.endpoint_url, region_name="us-east-1",
                          public_url="https://reports.example.com")
    first, second = tmp_path / "v1.html", tmp_path / "v2.html"
    first.write_text("<html>one</html>")
    second.write_text("<html>two</html>")

    assert store.current("prod", "report") is None
    published = store.publish("prod", "report", "v1", first)
    assert published["version"] == "v1" and published["url"] == "https://reports.example.com/reports/prod/report/v1/index.html"
    store.publish("prod", "report", "v2", second)
    assert store.current("prod", "report")["version"] == "v2"
    assert store.read("prod", "report", "v2") == b"<html>two</html>"
    assert store.versions("prod", "report") == ["v1", "v2"]
    rolled_back = store.publish("prod", "report", "v1", second)  # a stored version is never rewritten
    assert rolled_back["version"] == "v1" and store.read("prod", "report", "v1") == b"<html>one</html>"
    assert store.current("staging", "report") is None, "environments are separate"
    with pytest.raises(FileNotFoundError):
        store.read("prod", "report", "v3")


def test_reports_setting_selects_the_s3_report_store(tmp_path: Path) -> None:
    from platform_assets.resources_config import report_store_resource
    from platform_assets.settings import SettingsError
    from resources.s3_report_store import S3ReportStore

    config = yaml.safe_load((PROJECT_ROOT / "platform.yaml").read_text())
    config["reports"] = {"type": "s3", "bucket": "delivery-reports", "public_url": "https://reports.example.com"}
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(config))
    store = report_store_resource(load_settings(tmp_path / "platform.yaml"))
    assert isinstance(store, S3ReportStore) and store.bucket == "delivery-reports"
    config["reports"] = {"type": "s3"}
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SettingsError, match=r"reports.bucket: an s3 reports store needs a bucket"):
        load_settings(tmp_path / "platform.yaml")
