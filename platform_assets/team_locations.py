"""One code location per team (platform.yaml `code_locations: per_team`, workspace.py):
`-m platform_assets.team_locations -a <team's attribute>`, e.g. `-a ml_team`.

Teams are data, so their locations are attributes made on first access (PEP 562) and kept: a code
server, run worker or step process builds only the team it is asked for. The team is written to
the process environment, so the executor's forkserver, importing this module to preload it, builds
the same team once and forks every step from there.
"""

from __future__ import annotations

import os

import dagster as dg

from platform_assets.catalog import load_catalog
from platform_assets.code_location import build_definitions
from platform_assets.kinds.model.safety import forbid_unchecked_loads
from platform_assets.process_heap import settle
from platform_assets.settings import catalog_dir, load_settings, teams_path
from platform_assets.workspace import LOCATION_ENV, identifier, location_teams, team_of

forbid_unchecked_loads()  # as in definitions.py: MLflow deserializes no unchecked model


def __getattr__(attribute: str) -> dg.Definitions:
    team = team_of(attribute)
    if team is None:
        raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")
    settings = load_settings()
    catalog = load_catalog(catalog_dir(settings), settings)
    teams = location_teams(catalog)
    if team not in teams:
        raise AttributeError(f"{__name__}: no team '{team}' in {teams_path(settings)} or the catalog; its locations: "
                             f"{', '.join(identifier(t) for t in teams)}")
    os.environ[LOCATION_ENV] = attribute
    definitions = globals()[attribute] = build_definitions(settings, team, catalog)
    settle()  # kept for the process's life, as in definitions.py
    return definitions


if os.environ.get(LOCATION_ENV):
    __getattr__(os.environ[LOCATION_ENV])
