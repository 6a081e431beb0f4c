"""An app served behind the platform's wrapper in tests: templated routes, an error, and a
`/metrics` route of its own that the wrapper must leave alone."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, HTTPException
from fastapi.responses import PlainTextResponse

app = FastAPI(title="served-by-the-wrapper")


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/items/{item_id}")
def item(item_id: int) -> dict[str, int]:
    if item_id == 404:
        raise HTTPException(status_code=404, detail="no such item")
    return {"item_id": item_id}


@app.get("/boom")
def boom() -> None:
    raise RuntimeError("the endpoint fails")


@app.get("/slow")
async def slow(seconds: float = 0.3) -> dict[str, float]:
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@app.get("/metrics", response_class=PlainTextResponse)
def own_metrics() -> str:
    return "the app's own metrics\n"
