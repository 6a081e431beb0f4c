"""A spec's `owner` and approvers checked against the teams registry (`teams.yaml`).

The owner decides the namespace, the group and who may act for a deliverable, and an approver
is a person the deploy step must recognise; a name the registry does not know is a typo or an
attempt to borrow another team's rights, so it is a spec error.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from platform_assets.identity.teams import Teams
from platform_assets.specs import DNS_LABEL


def registry_problems(raw: Mapping[str, Any], teams: Teams, registry: str) -> list[tuple[str, str]]:
    """(field, message) for an owner that is not a team and approvers that are not members."""
    problems = []
    owner = raw.get("owner")
    if isinstance(owner, str) and re.match(DNS_LABEL, owner) and not teams.is_team(owner):
        problems.append(("owner", f"'{owner}' is not a team in {registry}{_close(owner, teams.team_names())}; "
                                  f"valid teams: {', '.join(teams.team_names())}"))
    promotion = raw.get("promotion")
    for env, policy in promotion.items() if isinstance(promotion, Mapping) else ():
        approvers = policy.get("approvers") if isinstance(policy, Mapping) else None
        unknown = [a for a in approvers if isinstance(a, str) and not teams.is_member(a)] \
            if isinstance(approvers, list) else []
        if unknown:
            members = sorted(teams.registry.members)
            names = ", ".join(f"'{name}'{_close(name, members)}" for name in unknown)
            verb = "is not a member" if len(unknown) == 1 else "are not members"
            problems.append((f"promotion.{env}.approvers",
                             f"{names} {verb} in {registry}; an approver must be listed under `members:` "
                             "there (the platform team adds people)"))
    return problems


def _close(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
