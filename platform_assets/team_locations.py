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

from platform_assets.code_location import build_definitions
from platform_assets.kinds.model.safety import forbid_unchecked_loads
from platform_assets.workspace import LOCATION_ENV, team_of

forbid_unchecked_loads()  # as in definitions.py: MLflow deserializes no unchecked model


def __getattr__(attribute: str) -> dg.Definitions:
    team = team_of(attribute)
    if team is None:
        raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")
    os.environ[LOCATION_ENV] = attribute
    definitions = globals()[attribute] = build_definitions(team=team)
    return definitions


if os.environ.get(LOCATION_ENV):
    __getattr__(os.environ[LOCATION_ENV])
