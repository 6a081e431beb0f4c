"""The bearer token model endpoints require.

Production sets it from a secret (the variable named by `model_serving.token_env`). The embedded
default generates one on first use into the state folder (readable by its owner only), so
`make dev` serves authenticated endpoints without any set-up.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from platform_assets.settings import PlatformSettings, state_dir

TOKEN_FILE = Path("secrets") / "model-token"
SERVER_TOKEN_ENV = "PLATFORM_MODEL_TOKEN"  # where a model server process reads its token


def token_file() -> Path:
    return state_dir() / TOKEN_FILE


def model_token(settings: PlatformSettings) -> str:
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
