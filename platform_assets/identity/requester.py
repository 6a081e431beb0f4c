"""Who asked for a run, as far as the platform can verify it, and what that person may do.

Four sources, in this order:
- `proxy`: the run was launched through the webserver behind the authenticating proxy; the run
  coordinator read the proxy's identity header and attested it on the run.
- `automation`: one of the platform's sensors asked (attested by the coordinator in the daemon).
- `ssh`: the run carries a request signed with a member's SSH key (`deliver promote`, ...); the
  step verifies the signature, its freshness and that no other run used it.
- `os-user`: only with `identity.mode: os-user` (the embedded default), the OS user who launched it
  (or who runs the step): a convenience on one machine, not a security boundary.
Anything else has no verified requester; with `identity.mode: verified` its deploy steps are refused.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from platform_assets.identity.attestation import attest, attested
from platform_assets.identity.requests import NONCE_TAG, SignedRequest
from platform_assets.identity.signatures import verify
from platform_assets.identity.teams import Teams, TeamsError, load_teams
from platform_assets.settings import PlatformSettings, teams_path

REQUESTED_BY_TAG = "platform/requested_by"
IDENTITY_SOURCE_TAG = "platform/identity_source"
ATTESTATION_TAG = "platform/requester_attestation"
OS_USER_TAG = "platform/os_user"  # the CLI's OS user; counts only in os-user mode
SENSOR_TAG = "dagster/sensor_name"
IDENTITY_TAGS = (REQUESTED_BY_TAG, IDENTITY_SOURCE_TAG, ATTESTATION_TAG)


@dataclass(frozen=True)
class Requester:
    name: str  # a member, what the proxy said (an e-mail nobody registered), sensor:<name>, or an OS user
    source: str  # proxy | automation | ssh | os-user
    member: str | None = None
    request: SignedRequest | None = None

    @property
    def automation(self) -> bool:
        return self.source == "automation"

    def describe(self) -> str:
        return f"{self.name} ({self.source})"


def registry(settings: PlatformSettings) -> Teams | None:
    try:
        return load_teams(teams_path(settings))
    except TeamsError:
        return None


def _member(teams: Teams | None, name: str, by_email: bool = False) -> str | None:
    if teams is None:
        return None
    if by_email:
        return teams.member_by_email(name)
    return name if teams.is_member(name) else None


def _intent(run_id: str, requester: Requester, tags: Mapping[str, str]) -> dict[str, Any]:
    """What the attestation covers: the run, who and how, and the platform tags saying what it does."""
    return {"run_id": run_id, "requested_by": requester.name, "source": requester.source,
            "tags": {k: v for k, v in tags.items() if k.startswith("platform/") and k not in IDENTITY_TAGS}}


def submission_requester(settings: PlatformSettings, teams: Teams | None, tags: Mapping[str, str],
                         header: str | None) -> Requester | None:
    """Who asks, as the run coordinator sees a submission (signed requests are left to the step)."""
    if header:
        member = _member(teams, header, by_email=True)
        return Requester(member or header.strip(), "proxy", member)
    if tags.get(SENSOR_TAG):
        return Requester(f"sensor:{tags[SENSOR_TAG]}", "automation")
    if settings.identity_mode == "os-user" and SignedRequest.from_tags(dict(tags)) is None:
        user = tags.get(OS_USER_TAG) or getpass.getuser()
        return Requester(user, "os-user", _member(teams, user))
    return None


def requester_tags(settings: PlatformSettings, run_id: str, tags: Mapping[str, str],
                   header: str | None) -> dict[str, str]:
    """The tags the coordinator sets: an attested requester, or empty ones over anything forged."""
    requester = submission_requester(settings, registry(settings), tags, header)
    if requester is None:
        return dict.fromkeys(IDENTITY_TAGS, "")
    return {REQUESTED_BY_TAG: requester.name, IDENTITY_SOURCE_TAG: requester.source,
            ATTESTATION_TAG: attest(settings, _intent(run_id, requester, tags))}


def request_problem(request: SignedRequest, teams: Teams | None, settings: PlatformSettings, instance: Any,
                    run_id: str) -> str | None:
    """Why a signed request does not count (None when it does): signature, age, single use."""
    if teams is None:
        return f"the teams registry ({teams_path(settings)}) cannot be read, so no signature can be checked"
    if not verify(request.payload(), request.signature, request.signer, teams):
        return (f"the signature does not verify for '{request.signer}' against the keys in {teams.source}"
                " (namespace platform-delivery)")
    max_age = settings.identity.request_max_age_s
    if request.age_s() > max_age:
        return f"the request was signed {request.age_s():.0f}s ago; signed requests are good for {max_age}s"
    if instance is not None:
        import dagster as dg

        runs = instance.get_runs(dg.RunsFilter(tags={NONCE_TAG: request.nonce}), limit=2)
        if any(r.run_id != run_id for r in runs):
            return "this signed request was already used by another run"
    return None


def verified_requester(settings: PlatformSettings, teams: Teams | None, instance: Any, run_id: str,
                       tags: Mapping[str, str]) -> tuple[Requester | None, str]:
    """The requester of a running run (for its steps), or None and why."""
    name, source = tags.get(REQUESTED_BY_TAG, ""), tags.get(IDENTITY_SOURCE_TAG, "")
    if name and source and source != "ssh":
        requester = Requester(name, source, _member(teams, name))
        if attested(settings, _intent(run_id, requester, tags), tags.get(ATTESTATION_TAG)):
            return requester, ""
    request = SignedRequest.from_tags(dict(tags))
    if request is not None:
        problem = request_problem(request, teams, settings, instance, run_id)
        if problem is None:
            return Requester(request.signer, "ssh", request.signer, request), ""
        reason = f"its signed request does not count: {problem}"
    else:
        reason = ("it was not launched through the webserver behind the authenticating proxy, by a platform "
                  "sensor, or with a signed request (`deliver promote`, `deliver rollback`)")
    if settings.identity_mode == "os-user":
        user = getpass.getuser()
        return Requester(user, "os-user", _member(teams, user)), ""
    return None, reason


def permission_problem(requester: Requester, action: str, owner: str, teams: Teams | None,
                       settings: PlatformSettings) -> str | None:
    """Promote and roll back: the owning team or the platform team (sensors only promote). In
    os-user mode the requester is recorded, not checked: nobody on this machine is verified."""
    if requester.automation:
        return None if action == "promote" else f"{requester.name} is a sensor; only people {action}"
    if settings.identity_mode == "os-user":
        return None
    if teams is None:
        return f"the teams registry ({teams_path(settings)}) cannot be read"
    if requester.member is None:
        return f"{requester.name} is not a member in {teams.source}"
    if teams.in_team(requester.member, owner) or teams.in_team(requester.member, teams.platform_team):
        return None
    return (f"{requester.member} may not {action} it: only members of {owner} (its owner) and of the platform "
            f"team {teams.platform_team} may ({teams.source})")
