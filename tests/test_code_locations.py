"""One code location per team (platform.yaml `code_locations: per_team`): what each location holds,
that they partition the single location's assets while keeping cross-team lineage, that one team's
broken spec or dbt project stays in its own location, the workspace and Helm deployments generated
from the catalog, and (with the daemon) `dagster dev` serving them as one asset graph.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from platform_assets.catalog import load_catalog
from platform_assets.code_location import build_definitions
from platform_assets.factory import CATALOG_KEY, catalog_key
from platform_assets.records import build_key, evaluate_key
from platform_assets.settings import PROJECT_ROOT, PlatformSettings, catalog_dir, load_settings
from platform_assets.workspace import TEAM_MODULE, location_of, user_deployments, workspace
from sensors.triggers import upstream_tick
from tests.conftest import cli, record_deploy
from tests.dagster_server import dagster_dev, graphql, wait_for

TEAMS = ["platform", "analytics", "ml-team", "recs-team"]  # the shared location first, then teams.yaml's


@pytest.fixture
def per_team(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PlatformSettings:
    """The demo catalog (a copy a test may break) and dbt project, served one location per team."""
    shutil.copytree(PROJECT_ROOT / "catalog", tmp_path / "catalog")
    shutil.copytree(PROJECT_ROOT / "dbt_project", tmp_path / "dbt_project",
                    ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    config = yaml.safe_load((PROJECT_ROOT / "platform.yaml").read_text())
    config["code_locations"] = "per_team"
    config["automation"] = {"sensor_interval_s": 2}
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    monkeypatch.setenv("PLATFORM_CONFIG", str(tmp_path / "platform.yaml"))
    monkeypatch.setenv("PLATFORM_CATALOG_DIR", str(tmp_path / "catalog"))
    monkeypatch.setenv("PLATFORM_TEAMS_FILE", str(PROJECT_ROOT / "teams.yaml"))
    monkeypatch.setenv("PLATFORM_DBT_PROJECT_DIR", str(tmp_path / "dbt_project"))
    monkeypatch.setenv("PLATFORM_STATE_DIR", str(tmp_path / "state"))
    return load_settings()


def held(definitions: dg.Definitions) -> tuple[set[dg.AssetKey], set[dg.AssetKey]]:
    """The keys a location defines, and the keys of other locations its assets depend on."""
    graph = definitions.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    return ({k for k in keys if not graph.get(k).is_external}, {k for k in keys if graph.get(k).is_external})


def catalog_errors(definitions: dg.Definitions, team: str) -> str:
    spec = next(s for s in definitions.resolve_all_asset_specs() if s.key == catalog_key(team))
    return spec.metadata["errors_at_load"].value


def test_team_locations_partition_the_catalog_and_keep_cross_team_lineage(per_team: PlatformSettings) -> None:
    single, _ = held(build_definitions(per_team))
    locations = {team: held(build_definitions(per_team, team)) for team in TEAMS}

    owned = [keys for keys, _ in locations.values()]
    assert sum(map(len, owned)) == len(set().union(*owned)), "every asset is defined in one location only"
    team_catalogs = {catalog_key(team) for team in TEAMS[1:]}
    assert set().union(*owned) == single | team_catalogs, "together they define what the single location does"
    analytics, ml, recs = (locations[t][0] for t in TEAMS[1:])
    assert {build_key("customer-features"), dg.AssetKey(["warehouse", "customer_features"])} <= analytics
    assert {build_key("churn-model"), build_key("churn-scoring")} <= ml and build_key("storefront") in recs
    assert locations["platform"][0] == {CATALOG_KEY, dg.AssetKey(["platform", "delivery_metrics"])}
    # lineage across teams: the upstream's last environment, defined in the upstream team's location
    assert locations["ml-team"][1] == {dg.AssetKey(["customer-features", "prod"])}
    assert locations["recs-team"][1] == {dg.AssetKey(["churn-model", "prod"])}
    graph = build_definitions(per_team, "ml-team").resolve_asset_graph()
    assert dg.AssetKey(["customer-features", "prod"]) in graph.get(build_key("churn-model")).parent_keys


def test_each_location_has_its_own_sensors_and_approval_job(per_team: PlatformSettings) -> None:
    for team in TEAMS[1:]:
        definitions = build_definitions(per_team, team)
        sensors = {sensor.name for sensor in definitions.sensors or []}
        assert {"platform_source_changes", "platform_promotion", "platform_promotion_on_success"} <= sensors
        assert definitions.resolve_job_def("platform_approve") is not None
    shared = build_definitions(per_team, "platform")
    assert {s.name for s in shared.schedules or []} == {"platform_delivery_metrics"}


def test_a_team_sensor_reads_another_teams_publication(per_team: PlatformSettings) -> None:
    """ml-team's upstream sensor sees customer-features (analytics) reach prod and rebuilds its models."""
    own = load_catalog(catalog_dir(per_team), per_team).owned_by("ml-team")
    with dg.instance_for_test() as instance:
        record_deploy(instance, "customer-features", "prod", "f1")
        _, cursor = upstream_tick(instance, own, per_team, None)
        record_deploy(instance, "customer-features", "prod", "f2")
        requests, _ = upstream_tick(instance, own, per_team, cursor)
    assert sorted(r.run_key for r in requests) == ["upstream:churn-model:customer-features:f2",
                                                   "upstream:churn-scoring:customer-features:f2"]
    assert requests[0].asset_selection == [build_key("churn-model"), evaluate_key("churn-model")]


def test_a_broken_spec_or_dbt_project_stays_in_its_team(per_team: PlatformSettings, tmp_path: Path) -> None:
    before = {team: held(build_definitions(per_team, team)) for team in ("ml-team", "recs-team")}
    (tmp_path / "catalog" / "storefront" / "deliverable.yaml").write_text("name: storefront\nowner: recs-team\n"
                                                                        "kind: webapp\nwebap: {}\n")
    model = tmp_path / "dbt_project" / "models" / "marts" / "customer_features.sql"
    model.write_text("select {{ this is not jinja")

    analytics = build_definitions(per_team, "analytics")
    assert "Compilation Error in model customer_features" in catalog_errors(analytics, "analytics")
    recs = build_definitions(per_team, "recs-team")
    assert "storefront/deliverable.yaml" in catalog_errors(recs, "recs-team")
    assert held(recs)[0] == before["recs-team"][0] - {build_key("storefront"), evaluate_key("storefront"),
                                                      dg.AssetKey(["storefront", "staging"]),
                                                      dg.AssetKey(["storefront", "prod"])}
    ml = build_definitions(per_team, "ml-team")
    assert held(ml) == before["ml-team"], "another team's broken spec and dbt project change nothing here"
    assert catalog_errors(ml, "ml-team") == "none"
    assert "storefront" in catalog_errors(build_definitions(per_team, "platform"), "platform"), \
        "the shared location lists every spec's errors"


def test_the_workspace_and_helm_deployments_come_from_the_catalog(per_team: PlatformSettings, tmp_path: Path) -> None:
    ghost = tmp_path / "catalog" / "ghost-api" / "deliverable.yaml"  # names a team the registry lacks
    ghost.parent.mkdir()
    ghost.write_text("name: ghost-api\nkind: service\nowner: ghost-team\ndescription: x\nservice: {app: a:app}\n")
    catalog = load_catalog(catalog_dir(per_team), per_team)
    assert any(error.owner == "ghost-team" for error in catalog.errors)
    entries = [entry["python_module"] for entry in workspace(per_team, catalog)["load_from"]]
    assert [(e["location_name"], e["attribute"], e["module_name"]) for e in entries] == [
        ("platform", "platform", TEAM_MODULE), ("analytics", "analytics", TEAM_MODULE),
        ("ml-team", "ml_team", TEAM_MODULE), ("recs-team", "recs_team", TEAM_MODULE)]
    assert location_of(per_team, "ml-team") == "ml-team"

    values = yaml.safe_load((PROJECT_ROOT / "deploy" / "helm" / "values.yaml").read_text())
    template = values["dagster-user-deployments"]["deployments"][0]
    deployments = user_deployments(per_team, catalog, values)["dagster-user-deployments"]["deployments"]
    assert [d["name"] for d in deployments] == TEAMS
    assert deployments[2]["dagsterApiGrpcArgs"] == ["-m", TEAM_MODULE, "-a", "ml_team"]
    for deployment in deployments:
        assert {k: v for k, v in deployment.items() if k not in ("name", "dagsterApiGrpcArgs")} == \
            {k: v for k, v in template.items() if k not in ("name", "dagsterApiGrpcArgs")}

    single = per_team.model_copy(update={"code_locations": "single"})
    assert workspace(single, catalog) == yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())
    assert user_deployments(single, catalog, values) == {"dagster-user-deployments":
                                                         values["dagster-user-deployments"]}
    assert location_of(single, "ml-team") == "platform"


def test_a_team_module_builds_only_the_team_it_is_asked_for(per_team: PlatformSettings) -> None:
    """A code server loads its team on first access; a process started with the team named (the
    executor's forkserver) has it built at import, so steps fork from a warm one."""
    probe = ("import json, os, platform_assets.team_locations as t\n"
             "built = sorted(a for a in ('analytics', 'ml_team', 'recs_team') if a in vars(t))\n"
             "keys = t.ml_team.resolve_asset_graph().get_all_asset_keys()\n"
             "try:\n    t.no_such_team\nexcept AttributeError as exc:\n    refused = str(exc)\n"
             "print(json.dumps([built, os.environ['PLATFORM_TEAM_LOCATION'], len(keys), hasattr(t, 'Not-a-team'), "
             "refused.endswith('its locations: platform, analytics, ml_team, recs_team')]))\n")
    env = {k: v for k, v in os.environ.items() if k != "PLATFORM_TEAM_LOCATION"}
    outcomes = []
    for named in (None, "recs_team"):
        child = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                               env={**env, **({"PLATFORM_TEAM_LOCATION": named} if named else {})})
        assert child.returncode == 0, child.stderr[-2000:]
        outcomes.append(json.loads(child.stdout.splitlines()[-1]))
    ml_keys = len(held(build_definitions(per_team, "ml-team"))[0]) + 1  # and the upstream it depends on
    assert outcomes == [[[], "ml_team", ml_keys, False, True], [["recs_team"], "ml_team", ml_keys, False, True]]


@pytest.fixture
def served(per_team: PlatformSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`dagster dev` on the workspace `deliver workspace` writes, as `make dev` starts it."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    generated = cli("workspace", "--output", str(home / "workspace.yaml"))
    assert generated.returncode == 0, generated.stderr
    with dagster_dev(home, dict(os.environ), tmp_path / "dagster-dev.log", workspace=home / "workspace.yaml") as server:
        monkeypatch.setenv("PLATFORM_WEBSERVER_URL", server.url)
        yield server.url


LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus " \
            "locationOrLoadError { __typename } } } } }"
GRAPH = "{ assetNodes { assetKey { path } dependencyKeys { path } repository { location { name } } } }"
SENSORS = "{ repositoriesOrError { ... on RepositoryConnection { nodes { location { name } sensors { name } } } } }"


@pytest.mark.daemon
def test_dagster_dev_serves_one_location_per_team_as_one_asset_graph(served: str, tmp_path: Path) -> None:
    url = served
    entries = graphql(url, LOCATIONS)["workspaceOrError"]["locationEntries"]
    assert sorted((e["name"], e["locationOrLoadError"]["__typename"]) for e in entries) == \
        sorted((team, "RepositoryLocation") for team in TEAMS)

    nodes = graphql(url, GRAPH)["assetNodes"]
    where = {"/".join(n["assetKey"]["path"]): n["repository"]["location"]["name"] for n in nodes}
    parents = {"/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]} for n in nodes}
    assert where["customer-features/prod"] == "analytics" and where["churn-model/build"] == "ml-team"
    assert "customer-features/prod" in parents["churn-model/build"], "cross-team lineage in the one graph"
    assert where["churn-model/prod"] == "ml-team" and "churn-model/prod" in parents["recommendations-api/build"]

    repositories = graphql(url, SENSORS)["repositoriesOrError"]["nodes"]
    per_location = {r["location"]["name"]: {s["name"] for s in r["sensors"]} for r in repositories}
    assert all("platform_promotion" in per_location[team] for team in TEAMS[1:])

    # `deliver` submits to the deliverable's own location; its step runs there and refuses (nothing evaluated)
    promoted = cli("promote", "customer-features", "--env", "staging", "--wait")
    assert promoted.returncode == 1, promoted.stdout + promoted.stderr
    run_id = promoted.stdout.split(" run ")[1].split()[0]
    run = graphql(url, f'{{ runOrError(runId: "{run_id}") {{ ... on Run {{ status repositoryOrigin '
                       '{ repositoryLocationName } } } }')["runOrError"]
    assert (run["status"], run["repositoryOrigin"]["repositoryLocationName"]) == ("FAILURE", "analytics")
    assert "customer-features" in promoted.stderr

    # one team's malformed spec: after a reload its location shows the error, the others are as they were
    (tmp_path / "catalog" / "storefront" / "deliverable.yaml").write_text("name: storefront\nkind: [\n")
    graphql(url, 'mutation { reloadWorkspace { __typename } }')

    def reloaded() -> dict | None:
        """The graph once every location is loaded again and recs-team's reflects the broken spec (the
        mutation returns before a code server has reloaded, so `LOADED` alone can be the old load)."""
        found = graphql(url, LOCATIONS)["workspaceOrError"]["locationEntries"]
        if not all(e["loadStatus"] == "LOADED" for e in found):
            return None
        graph = {"/".join(n["assetKey"]["path"]): n["repository"]["location"]["name"]
                 for n in graphql(url, GRAPH)["assetNodes"]}
        return graph if "storefront/build" not in graph else None

    after = wait_for("the workspace to reload without storefront", reloaded, tmp_path / "dagster-dev.log",
                     deadline_s=180)
    assert after["recommendations-api/build"] == "recs-team"
    assert {k: v for k, v in after.items() if v != "recs-team"} == {k: v for k, v in where.items() if v != "recs-team"}
