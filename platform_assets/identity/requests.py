"""A signed request: what a person asked the platform to do, in words their SSH key signed.

The CLI builds one per action (approve, promote, roll back), signs its canonical bytes and sends
both as run tags. The step that acts verifies the signature, that the request is what the run
does, that it is fresh, and that no other run used it: a copied request does nothing twice.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass

from platform_assets.identity.attestation import canonical

REQUEST_TAG = "platform/request"
SIGNATURE_TAG = "platform/request_signature"
NONCE_TAG = "platform/request_nonce"
ACTIONS = ("approve", "promote", "rollback")


@dataclass(frozen=True)
class SignedRequest:
    action: str
    deliverable: str
    environment: str
    version: str | None  # approve: the version approved; rollback: the target; promote: none
    signer: str
    requested_at: float
    nonce: str
    signature: str = ""

    @classmethod
    def new(cls, action: str, deliverable: str, environment: str, version: str | None, signer: str) -> SignedRequest:
        return cls(action, deliverable, environment, version, signer, round(time.time(), 3), secrets.token_hex(8))

    def fields(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if k != "signature"}

    def payload(self) -> bytes:
        return canonical(self.fields())

    def tags(self) -> dict[str, str]:
        return {REQUEST_TAG: json.dumps(self.fields(), sort_keys=True), SIGNATURE_TAG: self.signature,
                NONCE_TAG: self.nonce}

    @classmethod
    def from_fields(cls, fields: dict[str, object], signature: str) -> SignedRequest | None:
        try:
            return cls(**{**fields, "signature": signature})  # type: ignore[arg-type]
        except TypeError:
            return None

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> SignedRequest | None:
        if REQUEST_TAG not in tags:
            return None
        try:
            fields = json.loads(tags[REQUEST_TAG])
        except ValueError:
            return None
        request = cls.from_fields(fields, tags.get(SIGNATURE_TAG, "")) if isinstance(fields, dict) else None
        return request if request is not None and request.nonce == tags.get(NONCE_TAG) else None

    def age_s(self, now: float | None = None) -> float:
        return (now or time.time()) - self.requested_at
