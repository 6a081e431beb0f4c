"""Approvals: recorded by the platform's approval step, counted only when their proof verifies.

An approval is an observation on `<name>/<env>` (`event: approval`). It carries its proof: the
approver's signed request (`proof: ssh`, verified against the teams registry) or the platform's
attestation of a person it identified (`proof: platform`: the proxy's identity, or the OS user in
the embedded default). The deploy step and the promotion sensor count an approval only when its
proof verifies for an approver of that environment and it has not expired (`max_age` on the
policy); anything else in the event log is ignored, and `deliver history` says why.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from platform_assets.identity.attestation import attest, attested
from platform_assets.identity.requester import Requester
from platform_assets.identity.requests import SignedRequest
from platform_assets.identity.signatures import verify
from platform_assets.identity.teams import Teams
from platform_assets.settings import PlatformSettings
from platform_assets.specs import Deliverable

APPROVAL_EVENT = "approval"


@dataclass(frozen=True)
class ApprovalCheck:
    valid: bool
    approver: str
    reason: str = ""


ATTESTED = ("environment", "version", "approved_by", "approved_at", "identity_source")
NO_PROOF = "it carries no proof (written outside the platform's approval step)"


def _attested_fields(deliverable: str, metadata: dict[str, Any]) -> dict[str, Any]:
    return {"deliverable": deliverable, **{k: metadata.get(k) for k in ATTESTED}}


def approval_metadata(settings: PlatformSettings, deliverable: str, env: str, version: str,
                      requester: Requester) -> dict[str, Any]:
    """What the approval step records: who, what, when, and the proof."""
    metadata: dict[str, Any] = {
        "event": APPROVAL_EVENT, "version": version, "environment": env,
        "approved_by": requester.member or requester.name, "approved_at": datetime.now(UTC).isoformat(),
        "identity_source": requester.source,
    }
    if requester.request is not None:
        return {**metadata, "proof": "ssh", "request": json.dumps(requester.request.fields(), sort_keys=True),
                "signature": requester.request.signature}
    return {**metadata, "proof": "platform", "attestation": attest(settings, _attested_fields(deliverable, metadata))}


def check_approval(metadata: dict[str, Any], deliverable: Deliverable, env: str, settings: PlatformSettings,
                   teams: Teams | None, now: float | None = None) -> ApprovalCheck:
    """Whether a recorded approval counts for `deliverable` in `env`, and why not when it does not."""
    claimed = str(metadata.get("approved_by", "?"))
    proof = metadata.get("proof")
    if proof == "ssh":
        approver, problem, signed_at = _check_signed(metadata, deliverable.name, env, teams)
    elif proof == "platform":
        approver, problem, signed_at = claimed, None, _timestamp(metadata.get("approved_at"))
        if not attested(settings, _attested_fields(deliverable.name, metadata), metadata.get("attestation")):
            problem = "its platform attestation does not verify (not recorded by the platform's approval step)"
        elif settings.identity_mode == "verified" and metadata.get("identity_source") != "proxy":
            problem = f"it was recorded for a {metadata.get('identity_source')} identity, which verified mode refuses"
    else:
        approver, problem, signed_at = claimed, NO_PROOF, 0.0
    if problem:
        return ApprovalCheck(False, approver, problem)
    policy = deliverable.spec.policy(env)
    if approver not in policy.approvers:
        return ApprovalCheck(False, approver, f"{approver} is not an approver for {env} "
                                              f"(promotion.{env}.approvers: {', '.join(policy.approvers) or 'none'})")
    age = (now or time.time()) - signed_at
    if policy.max_age is not None and age > policy.max_age:
        return ApprovalCheck(False, approver, f"it expired: given {age / 3600:.1f}h ago, promotion.{env}.max_age is "
                                              f"{policy.max_age / 3600:.1f}h")
    return ApprovalCheck(True, approver)


def _check_signed(metadata: dict[str, Any], name: str, env: str,
                  teams: Teams | None) -> tuple[str, str | None, float]:
    try:
        request = SignedRequest.from_fields(json.loads(str(metadata.get("request"))), str(metadata.get("signature")))
    except ValueError:
        request = None
    if request is None:
        return str(metadata.get("approved_by", "?")), "its signed request cannot be read", 0.0
    if (request.action, request.deliverable, request.environment, request.version) != (
            "approve", name, env, str(metadata.get("version"))):
        return request.signer, "the signature is for another action, deliverable, environment or version", 0.0
    if teams is None or not verify(request.payload(), request.signature, request.signer, teams):
        return request.signer, f"the signature does not verify for '{request.signer}' with the registered keys", 0.0
    return request.signer, None, request.requested_at


def _timestamp(value: Any) -> float:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return 0.0
