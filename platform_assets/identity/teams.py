"""The teams registry (`teams.yaml`): teams, their members, the keys members sign with, the platform team.

One file, owned by the platform team, read by `deliver validate` (a spec's `owner` must be a
team, its approvers members), by the CLI (which key signs for whom) and by the deploy step (who
may approve, promote and roll back). It imports nothing heavy: `deliver validate` stays light.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from platform_assets.specs import DNS_LABEL

MEMBER_NAME = r"^[a-z][a-z0-9._-]{0,62}$"
KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa",
             "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")


class TeamsError(Exception):
    """The registry cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Member(_Strict):
    # What the authenticating proxy sends for this person (identity.header), e.g. the OIDC e-mail.
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    # Public keys, one line each as in an OpenSSH allowed_signers file ("ssh-ed25519 AAAA... comment").
    keys: list[str] = Field(default_factory=list)

    @field_validator("keys")
    @classmethod
    def _public_keys(cls, keys: list[str]) -> list[str]:
        for index, key in enumerate(keys):
            parts = key.split()
            if len(parts) < 2 or parts[0] not in KEY_TYPES:
                raise ValueError(f"keys[{index}]: not an OpenSSH public key line; expected '<type> <base64> "
                                 f"[comment]' with a type among {', '.join(KEY_TYPES[:2])}, ... (the .pub file)")
            try:
                base64.b64decode(parts[1], validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"keys[{index}]: the key material is not base64") from None
        return keys


class Team(_Strict):
    description: str = ""
    members: list[str] = Field(default_factory=list)


class Registry(_Strict):
    platform_team: str
    teams: dict[str, Team]
    members: dict[str, Member] = Field(default_factory=dict)

    @field_validator("teams")
    @classmethod
    def _team_names(cls, teams: dict[str, Team]) -> dict[str, Team]:
        bad = [name for name in teams if not re.match(DNS_LABEL, name)]
        if bad:
            raise ValueError(f"team names are DNS labels (they name namespaces): {', '.join(bad)}")
        return teams

    @field_validator("members")
    @classmethod
    def _member_names(cls, members: dict[str, Member]) -> dict[str, Member]:
        bad = [name for name in members if not re.match(MEMBER_NAME, name)]
        if bad:
            raise ValueError(f"member names are lower-case letters, digits, '.', '_' and '-': {', '.join(bad)}")
        emails = [m.email for m in members.values() if m.email]
        twice = sorted({e for e in emails if emails.count(e) > 1})
        if twice:
            raise ValueError(f"an e-mail identifies one member; used twice: {', '.join(twice)}")
        return members

    @model_validator(mode="after")
    def _consistent(self) -> Registry:
        if self.platform_team not in self.teams:
            raise ValueError(f"platform_team: '{self.platform_team}' is not a team here "
                             f"({', '.join(sorted(self.teams))})")
        for team, spec in self.teams.items():
            unknown = [m for m in spec.members if m not in self.members]
            if unknown:
                raise ValueError(f"teams.{team}.members: {', '.join(unknown)} not under members:")
        return self


@dataclass(frozen=True)
class Teams:
    """The loaded registry and the file it came from; answers who belongs where."""

    registry: Registry
    source: Path

    @property
    def platform_team(self) -> str:
        return self.registry.platform_team

    def team_names(self) -> list[str]:
        return sorted(self.registry.teams)

    def is_team(self, name: str) -> bool:
        return name in self.registry.teams

    def is_member(self, name: str) -> bool:
        return name in self.registry.members

    def teams_of(self, member: str) -> set[str]:
        return {team for team, spec in self.registry.teams.items() if member in spec.members}

    def in_team(self, member: str, team: str) -> bool:
        return member in self.registry.teams.get(team, Team()).members

    def member_by_email(self, email: str) -> str | None:
        wanted = email.strip().lower()
        return next((name for name, m in self.registry.members.items() if m.email and m.email.lower() == wanted),
                    None)

    def allowed_signers(self, namespace: str) -> str:
        """An OpenSSH allowed_signers file: each member's keys, valid for `namespace` only."""
        lines = [f'{name} namespaces="{namespace}" {" ".join(key.split()[:2])}'
                 for name, member in sorted(self.registry.members.items()) for key in member.keys]
        return "\n".join(lines) + "\n"


MAX_REGISTRY_BYTES = 1024 * 1024  # a thousand members with a few keys each fit well within it


def load_teams(path: Path) -> Teams:
    """Read (as carefully as a spec) and validate the registry; TeamsError names the file and the field."""
    from platform_assets.spec_file import SpecFileError, read_spec

    if not path.exists() and not path.is_symlink():
        raise TeamsError(f"{path}: not found; the teams registry lists teams, members and keys "
                         "(set PLATFORM_TEAMS_FILE or identity.teams_file in platform.yaml)")
    try:
        raw = read_spec(path, MAX_REGISTRY_BYTES)
    except SpecFileError as exc:
        raise TeamsError(f"{path}: {exc}") from exc
    try:
        registry = Registry.model_validate(raw or {})
    except ValidationError as exc:
        problems = "; ".join(f"field '{'.'.join(str(p) for p in err['loc']) or '(top level)'}': "
                             f"{err['msg'].removeprefix('Value error, ')}" for err in exc.errors())
        raise TeamsError(f"{path}: {problems}") from exc
    return Teams(registry=registry, source=path)
