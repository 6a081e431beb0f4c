"""Bearer tokens of model endpoints: one per (model, environment), derived from the platform's master.

`model_token(settings, model, env)` is HMAC-SHA256(master, "<model>:<env>"). Derived rather than
generated per pair and stored, because:
- every platform process and step pod computes the same token from the one master the platform
  already holds (from `model_serving.token_env`), with no per-pair state to share across pods,
  back up or lose;
- a holder of one pair's token (the model server of that environment, a service calling it) learns
  nothing about the master or any other pair, so a staging token is useless against prod;
- rotating the master rotates every pair at once (the next deploys pick the new values up).

The master never leaves the platform: deploys hand each model server and each consumer its pair's
token only. `sample_token` is a second token per pair that only the platform and the server hold:
it opens the server's sample of served inputs (`/-/sample`), which callers must not read.
Production sets the master from a secret; the embedded default generates one on first use into the
state folder (readable by its owner only), so `make dev` serves authenticated endpoints without
any set-up.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from platform_assets.settings import PlatformSettings, state_dir

TOKEN_FILE = Path("secrets") / "model-token"
SERVER_TOKEN_ENV = "PLATFORM_MODEL_TOKEN"  # where a model server process reads its own pair's token
SECRET_KEY = "token"  # the key of a per-pair Kubernetes Secret
SAMPLE_TOKEN_ENV = "PLATFORM_SAMPLE_TOKEN"  # the server's copy of the platform's sample token
SAMPLE_ROWS_ENV = "PLATFORM_SAMPLE_ROWS"  # how many served rows the server keeps


def token_file() -> Path:
    return state_dir() / TOKEN_FILE


def master_token(settings: PlatformSettings) -> str:
    """The platform's master, from `model_serving.token_env`, else generated into the state folder."""
    configured = os.environ.get(settings.model_serving.token_env)
    if configured:
        return configured
    path = token_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
        os.replace(path.with_suffix(".tmp"), path)
    return path.read_text().strip()


def model_token(settings: PlatformSettings, model: str, env: str) -> str:
    """The bearer token of `model` served in `env`: what its server accepts, what its callers send."""
    digest = hmac.new(master_token(settings).encode(), f"{model}:{env}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sample_token(settings: PlatformSettings, model: str, env: str) -> str:
    """The platform's token for the served sample of `model` in `env` (never given to a caller)."""
    return model_token(settings, f"served-sample\0{model}", env)  # no model name holds a NUL


def token_secret_name(settings: PlatformSettings, model: str, env: str) -> str:
    """The Kubernetes Secret holding that pair's token, in the namespace of each pod that reads it."""
    return settings.model_serving.token_secret.format(model=model, env=env)


def sample_secret_name(settings: PlatformSettings, model: str, env: str) -> str:
    """The Secret holding that pair's sample token, in the model server's namespace only."""
    return token_secret_name(settings, model, env) + "-sample"
