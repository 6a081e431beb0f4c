"""Secrets a spec declares, and the local store that resolves them on the embedded default.

A spec refers to a secret by name and key (`service.secrets: {VAR: {secret: s, key: k}}`), never by
value. On a cluster the reference becomes a `secretKeyRef` to the Kubernetes Secret of that name in
the team's namespace, so no value passes through the platform, a manifest or a GitOps repository.
Locally the same reference is a file readable by its owner only:
`<state>/secrets/teams/<team>/<secret>/<key>` (`$DAGSTER_HOME/platform/secrets/teams/...`); write one with
`python -m platform_assets.secret_store set <team> <secret> <key>` (value on stdin).
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

from pydantic import field_validator

from platform_assets.settings import state_dir
from platform_assets.specs import DNS_LABEL, DNS_LABEL_HINT, StrictModel

SECRETS_DIR = "secrets/teams"  # beside, never among, the platform's own (model-token, identity-key)
_KEY = re.compile(r"^[-_A-Za-z0-9][-._A-Za-z0-9]{0,252}$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Set by the platform or the sandbox in every child's environment; a secret must not replace them.
RESERVED_VARIABLES = frozenset({"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TZ", "PYTHONPATH",
                                "PYTHONNOUSERSITE", "PYTHONDONTWRITEBYTECODE"})


class SecretRef(StrictModel):
    """One key of a named secret: a Kubernetes Secret in the team's namespace, a file locally."""

    secret: str
    key: str

    @field_validator("secret")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        if not re.match(DNS_LABEL, value):
            raise ValueError(f"'{value}' is not a secret name; use {DNS_LABEL_HINT}")
        return value

    @field_validator("key")
    @classmethod
    def _key_name(cls, value: str) -> str:
        if not _KEY.match(value):
            raise ValueError(f"'{value}' is not a secret key; use letters, digits, '-', '_' and '.', "
                             "not starting with '.'")
        return value


def check_variables(secrets: Mapping[str, SecretRef], plain: Mapping[str, str]) -> None:
    """The names secrets are given as: variable names, not also plain values, not the platform's own."""
    problems = [f"'{name}' is not an environment variable name (letters, digits, '_')"
                for name in secrets if not _VARIABLE.match(name)]
    problems += [f"'{name}' is also in 'env'; give it one value, the secret or the plain one"
                 for name in secrets if name in plain]
    problems += [f"'{name}' is set by the platform; rename it" for name in secrets
                 if name in RESERVED_VARIABLES or name.startswith("PLATFORM_")]
    if problems:
        raise ValueError("; ".join(problems))


def secret_refs(secrets: Mapping[str, SecretRef]) -> dict[str, tuple[str, str]]:
    """Variable name -> (secret, key), the shape `SandboxTask` and `Workload` take."""
    return {name: (ref.secret, ref.key) for name, ref in secrets.items()}


class MissingSecret(LookupError):
    """A declared secret is not in the local store; the message says where to put it."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(message)
        self.variable = variable


def secret_path(team: str, secret: str, key: str) -> Path:
    return state_dir() / SECRETS_DIR / team / secret / key


def read_secret(team: str, secret: str, key: str, variable: str = "") -> str:
    """The value of one key, from a file only its owner may read (like ssh, others' access is refused)."""
    path = secret_path(team, secret, key)
    hint = f"python -m platform_assets.secret_store set {team} {secret} {key}"
    if not path.is_file():
        raise MissingSecret(variable, f"secret '{secret}' (key '{key}') of team {team} is not in the local "
                                      f"secret store: write it to {path} (mode 0600), e.g. with `{hint}`")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MissingSecret(variable, f"{path} is readable by others; `chmod 600 {path}` (or write it again "
                                      f"with `{hint}`)")
    return path.read_text().removesuffix("\n")


def resolve(team: str, refs: Mapping[str, tuple[str, str]]) -> dict[str, str]:
    """Variable name -> value of each reference; MissingSecret names the first one not in the store."""
    return {name: read_secret(team, secret, key, name) for name, (secret, key) in refs.items()}


def write_secret(team: str, secret: str, key: str, value: str) -> Path:
    """Store a value readable by its owner only (folders 0700, file 0600), replacing it atomically."""
    for what, name, valid in (("team", team, re.match(DNS_LABEL, team)),
                              ("secret", secret, re.match(DNS_LABEL, secret)), ("key", key, _KEY.match(key))):
        if not valid:
            raise ValueError(f"'{name}' is not a valid {what} name")
    path = secret_path(team, secret, key)
    for folder in (path.parent.parent.parent, path.parent.parent, path.parent):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)
    partial = path.with_name(f".{key}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value)
    os.replace(partial, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.secret_store",
                                     description="Store a secret a spec declares, for local builds and deploys.")
    commands = parser.add_subparsers(dest="command", required=True)
    setter = commands.add_parser("set", help="read the value from stdin and store it")
    for name in ("team", "secret", "key"):
        setter.add_argument(name)
    args = parser.parse_args(argv)
    try:
        path = write_secret(args.team, args.secret, args.key, sys.stdin.read().removesuffix("\n"))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"stored {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
