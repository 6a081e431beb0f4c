"""`deliver new KIND NAME`: a deliverable from its kind's template (the handler's `template`
folder), written into the catalog ready to validate and deliver unchanged.

Placeholders: `{{name}}` (the deliverable), `{{package}}` (the name as a Python or dbt
identifier), `{{owner}}` (a team) in file contents, `__package__` in file and folder names.
Nothing is written when the kind, the name or the owner is wrong, or the folder exists.
"""

from __future__ import annotations

import getpass
import re
import shutil
from pathlib import Path

from platform_assets.identity.teams import Teams
from platform_assets.kinds.registry import HANDLERS
from platform_assets.settings import SettingsError
from platform_assets.specs import DNS_LABEL

SKIPPED = {"__pycache__", ".ipynb_checkpoints"}


def scaffold(kind: str, name: str, owner: str | None, catalog_root: Path, teams: Teams | None) -> Path:
    """Write the template of `kind` as `catalog_root/name`; return that folder."""
    handler = HANDLERS.get(kind)
    if handler is None:
        raise SettingsError(f"unknown kind '{kind}'; kinds: {', '.join(sorted(HANDLERS))}")
    if handler.template is None or not handler.template.is_dir():
        raise SettingsError(f"kind '{kind}' has no template to start from (its handler's `template`)")
    if not re.match(DNS_LABEL, name):
        raise SettingsError(f"'{name}' is not a valid deliverable name: lower-case letters, digits and '-', "
                            "starting and ending with a letter or digit, at most 63 characters")
    folder = catalog_root / name
    if folder.exists():
        raise SettingsError(f"{folder} exists already; choose another name or remove it")
    values = {"name": name, "package": name.replace("-", "_"), "owner": owning_team(owner, teams)}
    staged = catalog_root / f".{name}.new"
    shutil.rmtree(staged, ignore_errors=True)
    try:
        for source in sorted(handler.template.rglob("*")):
            relative = source.relative_to(handler.template)
            if source.is_dir() or SKIPPED & set(relative.parts):
                continue
            target = staged / str(relative).replace("__package__", values["package"])
            target.parent.mkdir(parents=True, exist_ok=True)
            text = source.read_text()
            for key, value in values.items():
                text = text.replace("{{" + key + "}}", value)
            target.write_text(text)
        staged.rename(folder)  # the whole deliverable appears at once: a sensor never sees half of it
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return folder


def owning_team(owner: str | None, teams: Teams | None) -> str:
    """`owner` if it is a team; by default the one team the OS user belongs to."""
    if teams is None:
        if owner is None:
            raise SettingsError("the teams registry cannot be read, so pass --owner TEAM")
        return owner
    if owner is not None:
        if not teams.is_team(owner):
            raise SettingsError(f"'{owner}' is not a team in {teams.source}; teams: {', '.join(teams.team_names())}")
        return owner
    mine = sorted(teams.teams_of(getpass.getuser()))
    if len(mine) != 1:
        where = f"you are in {', '.join(mine)}" if mine else f"{getpass.getuser()} is in no team"
        raise SettingsError(f"pass --owner TEAM ({where}; teams: {', '.join(teams.team_names())})")
    return mine[0]
