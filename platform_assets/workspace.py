"""Which code locations serve the catalog, generated from it: the workspace `dagster dev` loads and
the Helm chart's user deployments (`deliver workspace`).

`single` (platform.yaml `code_locations`): one location, `platform_assets.definitions:defs`, the
whole catalog. `per_team`: Dagster's pattern for large organisations, one location per team of
the registry (and `platform`, the platform's own assets), each loading only its team's
deliverables (`platform_assets.team_locations`, attribute = the team's group name), so a team's
load, deploy and failures are its own. Lineage across teams stays one asset graph: a team's
assets depend on other teams' keys, which Dagster resolves across locations.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the catalog imports the kinds, whose modules use `identifier`
    from platform_assets.catalog import Catalog
    from platform_assets.settings import PlatformSettings

SINGLE_MODULE = "platform_assets.definitions"
SINGLE_LOCATION = "platform"
TEAM_MODULE = "platform_assets.team_locations"
SHARED_LOCATION = "platform"  # per team: the platform's own assets (catalog, delivery metrics), and the platform team's
# Set in a team location's process (team_locations.py), so the processes it starts (the executor's
# forkserver) preload the same team.
LOCATION_ENV = "PLATFORM_TEAM_LOCATION"
_ATTRIBUTE = re.compile(r"[a-z0-9_]+")


def identifier(team: str) -> str:
    """A team's name as an identifier: its location's module attribute and its asset group (team names
    are DNS labels; attributes and Dagster group names allow no '-')."""
    return team.replace("-", "_")


def team_of(attribute: str) -> str | None:
    """The team an attribute names (the inverse of `identifier`), None when it names none."""
    return attribute.replace("_", "-") if _ATTRIBUTE.fullmatch(attribute) else None


def location_teams(catalog: Catalog) -> list[str]:
    """The shared location, then every team of the registry (a location exists before its first
    deliverable; a spec naming an unknown team is an error of `platform/catalog`), or, while the
    registry is broken, every team a spec names."""
    if catalog.teams is not None:
        teams = set(catalog.teams.team_names())
    else:
        teams = {d.spec.owner for d in catalog} | {e.owner for e in catalog.errors if e.owner}
    return [SHARED_LOCATION, *sorted(teams - {SHARED_LOCATION})]


def holds_platform_assets(team: str | None) -> bool:
    """Whether the location of `team` (None: the single one) holds the platform's own assets."""
    return team in (None, SHARED_LOCATION)


def location_of(settings: PlatformSettings, owner: str) -> str:
    """The code location holding a deliverable of `owner`: where its runs are submitted."""
    return owner if settings.code_locations == "per_team" else SINGLE_LOCATION


def workspace(settings: PlatformSettings, catalog: Catalog) -> dict[str, Any]:
    """workspace.yaml's content for `dagster dev`."""
    if settings.code_locations == "single":
        entries = [{"module_name": SINGLE_MODULE, "attribute": "defs", "location_name": SINGLE_LOCATION}]
    else:
        entries = [{"module_name": TEAM_MODULE, "attribute": identifier(team), "location_name": team}
                   for team in location_teams(catalog)]
    return {"load_from": [{"python_module": entry} for entry in entries]}


def user_deployments(settings: PlatformSettings, catalog: Catalog, values: dict[str, Any]) -> dict[str, Any]:
    """The Helm chart's `dagster-user-deployments.deployments`, one per location, each shaped like the
    first deployment of `values` (deploy/helm/values.yaml: image, env, secrets, security settings);
    given to `helm upgrade` after values.yaml with `-f`, the list replaces the single one."""
    chart = values.get("dagster-user-deployments") or {}
    deployments = chart.get("deployments") or []
    if not deployments:
        raise ValueError("dagster-user-deployments.deployments: the values file has no deployment to copy")
    template = deployments[0]
    if settings.code_locations == "single":
        generated = [template]
    else:
        generated = []
        for team in location_teams(catalog):
            deployment = copy.deepcopy(template)
            deployment["name"] = team
            deployment["dagsterApiGrpcArgs"] = ["-m", TEAM_MODULE, "-a", identifier(team)]
            generated.append(deployment)
    return {"dagster-user-deployments": {**chart, "deployments": generated}}
