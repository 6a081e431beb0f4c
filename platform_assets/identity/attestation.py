"""The platform's own attestations: an HMAC over what the platform vouches for.

Two things are attested: who asked for a run (written by the run coordinator, which sees the
authenticating proxy's header, or knows a run came from one of the platform's sensors) and an
approval the platform recorded for a person it identified. The key is a platform credential:
the webserver, the daemon and the platform's steps hold it, deliverable code never does. So a
tag or an event written by anything else (a hand-written observation, a run created around the
webserver) does not verify, and the deploy step ignores it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from platform_assets.settings import PlatformSettings, state_dir

KEY_FILE = Path("secrets") / "identity-key"


def canonical(fields: dict[str, Any]) -> bytes:
    """The bytes signed and attested: sorted keys, no whitespace, so every side computes the same."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str).encode()


def platform_key(settings: PlatformSettings) -> bytes:
    """From `identity.key_env`; the embedded default generates one into the state folder (0600)."""
    configured = os.environ.get(settings.identity.key_env)
    if configured:
        return configured.encode()
    if settings.identity_mode == "verified":
        raise KeyError(f"{settings.identity.key_env} is not set; with identity.mode verified the platform's "
                       "attestation key comes from a secret (docs/platform-operator.md)")
    path = state_dir() / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
        os.replace(tmp, path)
    return path.read_text().strip().encode()


def attest(settings: PlatformSettings, fields: dict[str, Any]) -> str:
    return hmac.new(platform_key(settings), canonical(fields), hashlib.sha256).hexdigest()


def attested(settings: PlatformSettings, fields: dict[str, Any], proof: str | None) -> bool:
    """Whether `proof` is the platform's attestation of exactly `fields` (False without a key)."""
    if not proof:
        return False
    try:
        expected = attest(settings, fields)
    except KeyError:
        return False
    return hmac.compare_digest(expected, proof)
