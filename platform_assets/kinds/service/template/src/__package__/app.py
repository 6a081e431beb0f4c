"""{{name}}: the platform serves `app`, checks `/health` after each deploy and keeps the contract
(`/openapi.json`) compatible with the version in prod."""

from __future__ import annotations

import os

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI(title="{{name}}", version="0.1.0")


class Health(BaseModel):
    status: str
    version: str
    environment: str


class Greeting(BaseModel):
    message: str


@app.get("/health")
def health() -> Health:
    return Health(status="ok", version=os.environ.get("PLATFORM_VERSION", "dev"),
                  environment=os.environ.get("PLATFORM_ENVIRONMENT", "dev"))


@app.get("/hello/{who}")
def hello(who: str) -> Greeting:
    return Greeting(message=f"hello, {who}")
