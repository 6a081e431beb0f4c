"""SSH signatures over platform requests: the mechanism git uses for signed commits.

A person signs what they ask for (`ssh-keygen -Y sign`, with a key file or the key in ssh-agent)
and the platform verifies it against the allowed signers it derives from the teams registry
(`ssh-keygen -Y verify`), in the namespace `platform-delivery`, so a signature made for git or
for anything else never counts here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from platform_assets.identity.teams import Teams

NAMESPACE = "platform-delivery"
SIGNING_KEY_ENV = "PLATFORM_SIGNING_KEY"


class SignatureError(Exception):
    """Signing was not possible; the message says which key and why."""


def _ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if not found:
        raise SignatureError("ssh-keygen is not installed (Debian: openssh-client); it signs and verifies requests")
    return found


def signing_key(explicit: str | None = None) -> Path:
    """The key to sign with: `--key`, $PLATFORM_SIGNING_KEY, git's `user.signingkey` (when it is a
    file), else ~/.ssh/id_ed25519. A `.pub` path signs with the matching key in ssh-agent."""
    candidates = [explicit, os.environ.get(SIGNING_KEY_ENV), _git_signing_key(), "~/.ssh/id_ed25519"]
    for candidate in candidates:
        if candidate:
            path = Path(candidate).expanduser()
            if path.exists():
                return path
            if candidate is explicit:
                raise SignatureError(f"--key {candidate}: no such file")
    raise SignatureError("no signing key: pass --key, set PLATFORM_SIGNING_KEY, configure git's user.signingkey, "
                         "or create ~/.ssh/id_ed25519 (and register its .pub in teams.yaml)")


def _git_signing_key() -> str | None:
    git = shutil.which("git")
    if not git:
        return None
    completed = subprocess.run([git, "config", "--get", "user.signingkey"], capture_output=True, text=True)
    value = completed.stdout.strip()
    return value if completed.returncode == 0 and value and not value.startswith("key::") else None


def public_key(key: Path) -> str:
    """`<type> <base64>` of a key file (its .pub beside it, or derived from the private key)."""
    pub = key if key.suffix == ".pub" else key.with_name(key.name + ".pub")
    if pub.exists():
        text = pub.read_text()
    else:
        completed = subprocess.run([_ssh_keygen(), "-y", "-f", str(key)], capture_output=True, text=True)
        if completed.returncode != 0:
            raise SignatureError(f"cannot read the public half of {key}: {completed.stderr.strip()}")
        text = completed.stdout
    return " ".join(text.split()[:2])


def signer_of(key: Path, teams: Teams) -> str:
    """The member whose registered keys include `key`."""
    wanted = public_key(key)
    for name, member in teams.registry.members.items():
        if any(" ".join(k.split()[:2]) == wanted for k in member.keys):
            return name
    raise SignatureError(f"the key {key} is not registered for any member in {teams.source}; add its public "
                         f"half ({wanted[:40]}...) under members.<you>.keys")


def sign(payload: bytes, key: Path) -> str:
    completed = subprocess.run([_ssh_keygen(), "-Y", "sign", "-n", NAMESPACE, "-f", str(key)], input=payload,
                               capture_output=True)
    if completed.returncode != 0:
        raise SignatureError(f"signing with {key} failed: {completed.stderr.decode(errors='replace').strip()}")
    return completed.stdout.decode()


def verify(payload: bytes, signature: str, principal: str, teams: Teams) -> bool:
    """Whether `signature` over `payload` was made by one of `principal`'s registered keys."""
    if not principal or not signature or not teams.is_member(principal):
        return False
    with tempfile.TemporaryDirectory(prefix="platform-verify-") as tmp:
        allowed, sig = Path(tmp) / "allowed_signers", Path(tmp) / "request.sig"
        allowed.write_text(teams.allowed_signers(NAMESPACE))
        sig.write_text(signature)
        completed = subprocess.run([_ssh_keygen(), "-Y", "verify", "-f", str(allowed), "-I", principal,
                                    "-n", NAMESPACE, "-s", str(sig)], input=payload, capture_output=True)
    return completed.returncode == 0
