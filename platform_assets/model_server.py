"""The model server: `/predict` and `/health` for one registered model alias.

Started per environment by a deploy target, like a service:
`uvicorn platform_assets.model_server:app`, configured by environment variables. It resolves
`models:/<name>@<alias>` once at start-up (so it serves one version, reported by `/health`) and
exits if the model cannot be loaded, which is what makes a failed load roll the alias back. It
loads only a skops model whose types are in the trusted list its deployer put in
PLATFORM_TRUSTED_TYPES (`model_safety.py`), with MLflow's pickle deserialization switched off,
and answers `/predict` only to its own (model, environment) token.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from platform_assets.model_safety import forbid_unchecked_loads, load_version, trusted_from_env
from platform_assets.model_token import SERVER_TOKEN_ENV

MODEL_NAME_ENV = "MODEL_NAME"
MODEL_ALIAS_ENV = "MODEL_ALIAS"
TOKEN_ENV = SERVER_TOKEN_ENV


@dataclass
class Loaded:
    name: str
    alias: str
    version: str
    model: Any


class PredictRequest(BaseModel):
    dataframe_records: list[dict[str, Any]] = Field(min_length=1, description="one object per row, by feature")


class PredictResponse(BaseModel):
    model: str
    version: str
    predictions: list[Any]


class Health(BaseModel):
    status: str
    model: str
    alias: str
    version: str
    model_uri: str
    environment: str


def load(name: str, alias: str, expected_version: str | None) -> Loaded:
    """Resolve the alias to a version first, then check and load that version: the two cannot disagree."""
    import mlflow

    client = mlflow.MlflowClient()
    version = str(client.get_model_version_by_alias(name, alias).version)
    if expected_version and version != expected_version:
        raise RuntimeError(f"models:/{name}@{alias} is version {version}, this server was started for "
                           f"{expected_version}")
    return Loaded(name, alias, version, load_version(f"models:/{name}/{version}", trusted_from_env()))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    if not os.environ.get(TOKEN_ENV):
        raise RuntimeError(f"{TOKEN_ENV} is not set; the model server never serves without a token")
    forbid_unchecked_loads()
    app.state.loaded = load(os.environ[MODEL_NAME_ENV], os.environ[MODEL_ALIAS_ENV],
                            os.environ.get("PLATFORM_VERSION"))
    yield


app = FastAPI(title="platform model server", lifespan=lifespan)
bearer = HTTPBearer(auto_error=False)


def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    expected = os.environ[TOKEN_ENV]
    if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a valid bearer token is required",
                            headers={"WWW-Authenticate": "Bearer"})


@app.get("/health", response_model=Health)
def health() -> Health:
    loaded: Loaded = app.state.loaded
    return Health(status="ok", model=loaded.name, alias=loaded.alias, version=loaded.version,
                  model_uri=f"models:/{loaded.name}@{loaded.alias}",
                  environment=os.environ.get("PLATFORM_ENVIRONMENT", "local"))


@app.post("/predict", response_model=PredictResponse, dependencies=[Depends(authorized)])
def predict(request: PredictRequest) -> PredictResponse:
    import pandas as pd

    loaded: Loaded = app.state.loaded
    try:
        output = loaded.model.predict(pd.DataFrame.from_records(request.dataframe_records))
    except Exception as exc:  # schema enforcement and model errors are the caller's input problem
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"{type(exc).__name__}: {exc}") from exc
    predictions = output.tolist() if hasattr(output, "tolist") else list(output)
    return PredictResponse(model=loaded.name, version=loaded.version, predictions=predictions)
