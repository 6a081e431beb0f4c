"""Fixtures that run the whole platform in a temporary folder: its own DAGSTER_HOME (and so its own
state folder and deployments), and a copy of the demo catalog that a test may change."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml

from platform_assets.factory import build_assets
from platform_assets.fingerprint import IGNORED_DIRS
from platform_assets.resources_config import platform_resources
from platform_assets.settings import PROJECT_ROOT, PlatformSettings, load_settings
from resources.local_process import LocalProcessTarget
from resources.s3_artifact_store import S3ArtifactStore
from tests.postgres_server import PostgresServer, running_postgres

DEMO_CATALOG = PROJECT_ROOT / "catalog"
ARTIFACT_BUCKET = "delivery-artifacts"


@dataclass
class Platform:
    home: Path
    catalog: Path
    settings: PlatformSettings
    instance: dg.DagsterInstance

    def materialize(self, *keys: str) -> dg.ExecuteInProcessResult:
        """Run the given assets in-process against this platform's instance (real stages, real processes)."""
        return dg.materialize(
            build_assets(self.settings),
            selection=[dg.AssetKey.from_user_string(key) for key in keys],
            resources=platform_resources(self.settings),
            instance=self.instance,
            raise_on_error=False,
        )

    def run_request(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        """What the daemon launches for a sensor's request, run in-process with the request's tags."""
        return dg.materialize(
            build_assets(self.settings),
            selection=list(request.asset_selection or []),
            resources=platform_resources(self.settings),
            instance=self.instance,
            tags=dict(request.tags),
            raise_on_error=False,
        )

    def automate(self, cursors: dict[str, str | None], launched: dict[str, bool], rounds: int = 8) -> list[str]:
        """Tick every platform sensor and run what it requests, as the daemon would (a run key is
        launched once), until no sensor asks for anything; return the run keys launched."""
        from platform_assets.code_location import build_definitions

        defs = build_definitions(self.settings)
        started = []
        for _ in range(rounds):
            requested = []
            for sensor in defs.sensors:
                if isinstance(sensor, dg.RunStatusSensorDefinition):
                    # It ticks on finished runs and plans what platform_promotion plans, which ticks here;
                    # tests/test_promotion.py evaluates it on runs, the daemon tests run it for real.
                    continue
                context = dg.build_sensor_context(instance=self.instance, cursor=cursors.get(sensor.name),
                                                  definitions=defs, resources=platform_resources(self.settings))
                result = sensor(context)
                if isinstance(result, dg.RunRequest):  # the freshness sensor returns one and sets the cursor
                    result = dg.SensorResult(run_requests=[result], cursor=context.cursor)
                cursors[sensor.name] = getattr(result, "cursor", None) or context.cursor
                # Deliveries only: runs of checks alone (freshness) change no environment.
                requested += [r for r in getattr(result, "run_requests", None) or []
                              if r.asset_selection and r.run_key not in launched]
            if not requested:
                return started
            for request in requested:
                launched[request.run_key] = self.run_request(request).success
                started.append(request.run_key)
        raise AssertionError(f"the sensors kept requesting runs after {rounds} rounds: {started}")

    def latest(self, key: str) -> dict:
        event = self.instance.get_latest_materialization_event(dg.AssetKey.from_user_string(key))
        assert event is not None, f"{key} was never materialized"
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}

    def current(self, deliverable: str, env: str) -> dict | None:
        return LocalProcessTarget(environment=env).current(deliverable)


# Every test is marked `unit`, `e2e` or `daemon` here, from what it uses, so the fast loop
# (`make test-fast`: `-m unit`) needs no list to keep up to date.
DAEMON_MODULES = {"test_automation_daemon", "test_governance", "test_make_dev", "test_readme", "test_runtime_daemon",
                  "test_ui_browser"}  # dagster dev, the daemon, make, Chromium
E2E_MODULES = {"test_benchmarks", "test_dbt_project", "test_k8s_target", "test_local_process", "test_serving",
               "test_slo", "test_warehouse", "test_imports"}
# (the dbt CLI, uvicorn, deployed processes, the stand-in API server, a fresh interpreter per module)
E2E_FIXTURES = {"platform", "datasets", "delivered", "features_home", "models", "postgres_server", "postgres_db",
                "s3_endpoint", "s3", "growth"}  # a platform instance with real deliveries or a server


PROCESS_CALLS = ("subprocess.", "cli(", "sys.executable")  # a test body that starts a process of its own


def _starts_processes(item: pytest.Item) -> bool:
    import inspect

    function = getattr(item, "function", None)
    try:
        source = inspect.getsource(function) if function else ""
    except (OSError, TypeError):
        return False
    return any(call in source for call in PROCESS_CALLS)


RUN_ORDER = ("daemon", "e2e", "unit")  # longest first, so the short ones fill the workers at the end


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if any(item.get_closest_marker(name) for name in RUN_ORDER):
            continue  # the test says so itself
        if module in DAEMON_MODULES:
            item.add_marker(pytest.mark.daemon)
        elif (module in E2E_MODULES or E2E_FIXTURES & set(getattr(item, "fixturenames", ()))
              or _starts_processes(item)):
            item.add_marker(pytest.mark.e2e)
        else:
            item.add_marker(pytest.mark.unit)
    # `make test` hands tests to its workers in this order (pytest-xdist `--dist load`): the daemon
    # tests, which mostly wait on sensor ticks and servers, start first and overlap everything else.
    items.sort(key=lambda item: next(i for i, name in enumerate(RUN_ORDER) if item.get_closest_marker(name)))


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """A command of the project's CLIs (`dagster ...`, `platform_assets.cli ...`) as a user runs it."""
    module = ["-m", "dagster"] if args[0] == "asset" else ["-m", "platform_assets.cli"]
    return subprocess.run([sys.executable, *module, *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=timeout)


def materialize_with_cli(keys: list[str]) -> None:
    """The README's `dagster asset materialize` command for `keys`; fails the test with dagster's stderr."""
    completed = cli("asset", "materialize", "-m", "platform_assets.definitions", "--select", ",".join(keys))
    assert completed.returncode == 0, completed.stderr[-3000:]


def status_json() -> list[dict]:
    completed = cli("status", "--json")
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def record_from_a_run(instance: dg.DagsterInstance, key: dg.AssetKey, metadata: dict) -> None:
    """A materialization of `key` written by a run's step, as the stages write their records."""

    @dg.asset(key=key)
    def _record() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=metadata)

    assert dg.materialize([_record], instance=instance).success


def record_deploy(instance: dg.DagsterInstance, name: str, env: str, version: str, healthy: bool = True) -> None:
    """A deploy as `run_deploy` records it (a materialization with `version` and `healthy`), without running it."""
    from platform_assets.records import env_key

    record_from_a_run(instance, env_key(name, env), {"version": version, "environment": env, "healthy": healthy})


@dataclass(frozen=True)
class Identities:
    """Members with real SSH keys in a teams registry of the test's own, in `verified` mode."""

    keys: dict[str, Path]
    teams_file: Path


def ssh_key(folder: Path, name: str) -> Path:
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key


def write_teams(path: Path, teams: dict[str, list[str]], keys: dict[str, Path], platform_team: str = "platform",
                emails: bool = True) -> Path:
    members = {name: {"keys": [(key.with_suffix(".pub")).read_text().strip()],
                      **({"email": f"{name}@example.com"} if emails else {})} for name, key in keys.items()}
    path.write_text(yaml.safe_dump({"platform_team": platform_team, "members": members,
                                    "teams": {team: {"members": names} for team, names in teams.items()}}))
    return path


@pytest.fixture
def identities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Identities:
    """alice and bob in recs-team (alice approves in the tests' specs), mallory in ml-team, olga in
    the platform team; identity.mode verified with a test attestation key."""
    folder = tmp_path / "keys"
    folder.mkdir()
    keys = {name: ssh_key(folder, name) for name in ("alice", "bob", "mallory", "olga")}
    teams = write_teams(tmp_path / "teams.yaml", {"platform": ["olga"], "recs-team": ["alice", "bob"],
                                                  "ml-team": ["mallory"], "analytics": ["olga"]}, keys)
    monkeypatch.setenv("PLATFORM_TEAMS_FILE", str(teams))
    monkeypatch.setenv("PLATFORM_IDENTITY_MODE", "verified")
    monkeypatch.setenv("PLATFORM_IDENTITY_KEY", "test-attestation-key")
    return Identities(keys, teams)


def copy_deliverable(name: str, catalog: Path, standalone: bool = False) -> Path:
    """A demo deliverable in a test catalog; `standalone` drops its depends_on (tests of one kind alone)."""
    folder = catalog / name
    if not folder.exists():
        shutil.copytree(DEMO_CATALOG / name, folder, ignore=shutil.ignore_patterns(*IGNORED_DIRS, "*.egg-info"))
    demo_spec = DEMO_CATALOG / name / "deliverable.yaml"
    if standalone:
        spec = yaml.safe_load(demo_spec.read_text())
        spec.pop("depends_on", None)
        (folder / "deliverable.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    else:
        shutil.copyfile(demo_spec, folder / "deliverable.yaml")  # verbatim: tests edit its text
    return folder


@pytest.fixture
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    yield from platform_with((PROJECT_ROOT / "deploy" / "dagster.local.yaml").read_text(), tmp_path, monkeypatch)


def platform_with(instance_yaml: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    """The platform on an instance configured by `instance_yaml` (a dagster.yaml)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml)
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    copy_deliverable("recommendations-api", catalog, standalone=True)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("PLATFORM_CATALOG_DIR", str(catalog))
    monkeypatch.delenv("PLATFORM_STATE_DIR", raising=False)
    settings = load_settings()
    with dg.DagsterInstance.get() as instance:
        yield Platform(home, catalog, settings, instance)
    stop_all(settings)


@pytest.fixture
def kind_registry() -> Iterator[None]:
    """The kinds and Kubernetes shapes are process-wide: other tests must not see a test's own."""
    from platform_assets.kinds.registry import HANDLERS
    from resources.k8s_manifests import RENDERERS

    saved = dict(HANDLERS), dict(RENDERERS)
    yield
    for registry, before in zip((HANDLERS, RENDERERS), saved, strict=True):
        registry.clear()
        registry.update(before)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's server mode: a local S3-compatible HTTP server that boto3 talks to like to AWS."""
    from moto.server import ThreadedMotoServer

    from resources.deploy_target import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3ArtifactStore:
    """An empty bucket; credentials only through the environment, as in production."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    store = S3ArtifactStore(bucket=ARTIFACT_BUCKET, endpoint_url=s3_endpoint, region_name="us-east-1",
                            cache_dir=str(tmp_path / "cache"))
    client = store.client()
    if ARTIFACT_BUCKET in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        for obj in client.list_objects_v2(Bucket=ARTIFACT_BUCKET).get("Contents", []):
            client.delete_object(Bucket=ARTIFACT_BUCKET, Key=obj["Key"])
    else:
        client.create_bucket(Bucket=ARTIFACT_BUCKET)
    return store


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session; tests take a fresh database each (`postgres_db`)."""
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> PostgresServer:
    import uuid

    import psycopg2

    name = f"w_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(host=postgres_server.host, port=postgres_server.port, user=postgres_server.user,
                             password=postgres_server.password, dbname=postgres_server.dbname)
    admin.autocommit = True
    admin.cursor().execute(f"create database {name}")
    admin.close()
    return dataclasses.replace(postgres_server, dbname=name)


def stop_all(settings: PlatformSettings) -> None:
    for env in settings.environment_names:
        target = LocalProcessTarget(environment=env)
        for name in target.deployed_names():
            target.stop(name)


@pytest.fixture
def datasets(platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Platform:
    """The platform with the demo datasets and a private copy of the dbt project."""
    for name in ("customer-features", "customer-segments"):
        copy_deliverable(name, platform.catalog)
    dbt_copy = Path(shutil.copytree(PROJECT_ROOT / "dbt_project", tmp_path / "dbt_project",
                                    ignore=shutil.ignore_patterns("target", "logs", "*.duckdb")))
    monkeypatch.setenv("PLATFORM_DBT_PROJECT_DIR", str(dbt_copy))
    return platform


@pytest.fixture(scope="module")
def features_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A DAGSTER_HOME where customer-features is published in staging and prod (once per module)."""
    root = tmp_path_factory.mktemp("features")
    with pytest.MonkeyPatch.context() as patch:
        platform = model_platform(root, patch)
        result = platform.materialize(*(f"customer-features/{stage}" for stage in ("build", "evaluate", "staging",
                                                                                    "prod")))
        assert result.success, [e for e in result.all_events if e.is_failure]
        platform.instance.dispose()
    yield root


@pytest.fixture
def models(features_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    """A copy of `features_home` (its event log, warehouse and artifacts) with a fresh MLflow store:
    the model's tests may change its spec the way an ML engineer would."""
    shutil.copytree(features_home, tmp_path, dirs_exist_ok=True)
    platform = model_platform(tmp_path, monkeypatch)
    yield platform
    stop_all(platform.settings)
    platform.instance.dispose()


def model_platform(root: Path, patch: pytest.MonkeyPatch) -> Platform:
    """The platform in `root` with customer-features, churn-model and recommendations-api."""
    home, catalog = root / "dagster_home", root / "catalog"
    home.mkdir(exist_ok=True)
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    for name in ("customer-features", "churn-model", "recommendations-api"):
        copy_deliverable(name, catalog)
    dbt = root / "dbt_project"
    if not dbt.exists():
        shutil.copytree(PROJECT_ROOT / "dbt_project", dbt, ignore=shutil.ignore_patterns("logs", "*.duckdb"))
    for name, value in {"DAGSTER_HOME": home, "PLATFORM_CATALOG_DIR": catalog, "PLATFORM_DBT_PROJECT_DIR": dbt}.items():
        patch.setenv(name, str(value))
    patch.delenv("PLATFORM_STATE_DIR", raising=False)
    patch.delenv("PLATFORM_MODEL_TOKEN", raising=False)
    settings = load_settings()
    return Platform(home, catalog, settings, dg.DagsterInstance.get())
