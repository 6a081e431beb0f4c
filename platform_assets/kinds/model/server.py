"""The model server: `/predict` and `/health` for one registered model alias.

Started per environment by a deploy target, like a service:
`uvicorn platform_assets.kinds.model.server:app`, configured by environment variables. It resolves
`models:/<name>@<alias>` once at start-up (so it serves one version, reported by `/health`) and
exits if the model cannot be loaded, which is what makes a failed load roll the alias back. It
loads only a skops model whose types are in the trusted list its deployer put in
PLATFORM_TRUSTED_TYPES (`model_safety.py`), with MLflow's pickle deserialization switched off,
and answers `/predict` only to its own (model, environment) token.

`/predict` speaks MLflow's scoring protocol, parsed by MLflow's own scoring server
(`infer_and_parse_data`): a body with exactly one of `dataframe_split`, `dataframe_records`,
`instances` or `inputs`, cast to the model signature's types where MLflow calls that safe (so an
integer for a float column is accepted), and answers `{"predictions": [...]}` as `mlflow models
serve` does, plus the platform's `model` and `version`. Reusing MLflow's parser rather than a
schema of our own is what makes a model's `serving_input_example.json` a valid request here.

It keeps the latest served rows and their predictions in a ring buffer (PLATFORM_SAMPLE_ROWS, a
few thousand) for the platform's `drift` check, which reads it from `GET /-/sample` with a token
only the platform holds (PLATFORM_SAMPLE_TOKEN): the callers' token does not open it, since the
sample holds other callers' inputs. An endpoint rather than a file, because the platform reads
it the same way from a local process and from a pod whose filesystem no step can see; a ring
buffer rather than a reservoir, because drift is about what is served now, and a sample over the
server's whole life would dilute a recent shift. A restart starts an empty sample.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Body, Depends, FastAPI, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from platform_assets.kinds.model.safety import forbid_unchecked_loads, load_version, trusted_from_env
from platform_assets.model_token import SAMPLE_ROWS_ENV, SAMPLE_TOKEN_ENV, SERVER_TOKEN_ENV
from platform_assets.serving_metrics import SAMPLE_PATH

MODEL_NAME_ENV = "MODEL_NAME"
MODEL_ALIAS_ENV = "MODEL_ALIAS"
TOKEN_ENV = SERVER_TOKEN_ENV
DEFAULT_SAMPLE_ROWS = 5000


class ServedSample:
    """The latest `capacity` served rows and their predictions; appended from the request threads."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.served = 0
        self._rows: deque[tuple[dict[str, Any], Any]] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def add(self, rows: list[dict[str, Any]], predictions: list[Any]) -> None:
        with self._lock:
            self._rows.extend(zip(rows, predictions, strict=True))
            self.served += len(rows)

    def read(self) -> tuple[list[dict[str, Any]], list[Any], int]:
        with self._lock:
            return [row for row, _ in self._rows], [p for _, p in self._rows], self.served


@dataclass
class Loaded:
    name: str
    alias: str
    version: str
    model: Any


SCORING_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PREDICT_BODY = Body(description=f"MLflow's scoring protocol: exactly one of {', '.join(SCORING_FORMATS)}",
                    examples=[{"dataframe_split": {"columns": ["orders_count"], "data": [[3]]}},
                              {"dataframe_records": [{"orders_count": 3}]}])


class PredictResponse(BaseModel):
    model: str
    version: str
    predictions: list[Any]


class Sample(BaseModel):
    model: str
    version: str
    capacity: int
    served_rows: int = Field(description="rows served since the server started")
    rows: list[dict[str, Any]]
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
    app.state.sample = ServedSample(int(os.environ.get(SAMPLE_ROWS_ENV) or DEFAULT_SAMPLE_ROWS))
    yield


app = FastAPI(title="platform model server", lifespan=lifespan)
bearer = HTTPBearer(auto_error=False)


def _require(credentials: HTTPAuthorizationCredentials | None, expected: str) -> None:
    if (credentials is None or not expected
            or not secrets.compare_digest(credentials.credentials.encode(), expected.encode())):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a valid bearer token is required",
                            headers={"WWW-Authenticate": "Bearer"})


def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    _require(credentials, os.environ[TOKEN_ENV])


def platform_only(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    """The platform's own token for this (model, environment); unset, nothing opens the sample."""
    _require(credentials, os.environ.get(SAMPLE_TOKEN_ENV, ""))


@app.get("/health", response_model=Health)
def health() -> Health:
    loaded: Loaded = app.state.loaded
    return Health(status="ok", model=loaded.name, alias=loaded.alias, version=loaded.version,
                  model_uri=f"models:/{loaded.name}@{loaded.alias}",
                  environment=os.environ.get("PLATFORM_ENVIRONMENT", "local"))


def parse_scoring_input(body: dict[str, Any], model: Any) -> Any:
    """The request as MLflow's scoring server parses it, cast to the model signature's input schema."""
    import pandas as pd
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    metadata = getattr(model, "metadata", None)
    schema = metadata.get_input_schema() if metadata is not None else None
    parsed = infer_and_parse_data(body, schema)
    return pd.DataFrame(parsed) if isinstance(parsed, dict) else parsed


def served_rows(frame: Any) -> list[dict[str, Any]]:
    """Rows as JSON values (numpy scalars are not), for the drift sample."""
    return json.loads(frame.to_json(orient="records")) if hasattr(frame, "to_json") else list(frame)


@app.post("/predict", response_model=PredictResponse, dependencies=[Depends(authorized)])
def predict(body: dict[str, Any] = PREDICT_BODY) -> PredictResponse:
    loaded: Loaded = app.state.loaded
    try:
        frame = parse_scoring_input(body, loaded.model)
        output = loaded.model.predict(frame)
    except Exception as exc:  # parsing, schema enforcement and model errors are the caller's input problem
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"{type(exc).__name__}: {exc}") from exc
    predictions = output.tolist() if hasattr(output, "tolist") else list(output)
    app.state.sample.add(served_rows(frame), predictions)
    return PredictResponse(model=loaded.name, version=loaded.version, predictions=predictions)


@app.get(SAMPLE_PATH, response_model=Sample, dependencies=[Depends(platform_only)])
def sample() -> Sample:
    loaded: Loaded = app.state.loaded
    served: ServedSample = app.state.sample
    rows, predictions, count = served.read()
    return Sample(model=loaded.name, version=loaded.version, capacity=served.capacity, served_rows=count,
                  rows=rows, predictions=predictions)
