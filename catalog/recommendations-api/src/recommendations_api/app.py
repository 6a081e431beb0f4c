"""HTTP interface. The OpenAPI contract FastAPI derives from this module is the service's API."""

from __future__ import annotations

import os

from fastapi import FastAPI, HTTPException, Query, status
from pydantic import BaseModel, Field

from recommendations_api.catalog import PRODUCTS, rank

app = FastAPI(title="recommendations-api", version="1.2.0")


class Health(BaseModel):
    status: str
    version: str
    environment: str


class Item(BaseModel):
    product_id: str
    name: str
    score: float = Field(ge=0, le=1)


class Recommendations(BaseModel):
    customer_id: str
    items: list[Item]


class Feedback(BaseModel):
    customer_id: str
    product_id: str
    clicked: bool
    note: str | None = None


@app.get("/health", response_model=Health)
def health() -> Health:
    return Health(
        status="ok",
        version=os.environ.get("PLATFORM_VERSION", "dev"),
        environment=os.environ.get("PLATFORM_ENVIRONMENT", "local"),
    )


@app.get("/recommendations/{customer_id}", response_model=Recommendations)
def recommendations(customer_id: str, limit: int = Query(default=3, ge=1, le=len(PRODUCTS))) -> Recommendations:
    items = [Item(product_id=pid, name=PRODUCTS[pid], score=round(s, 4)) for pid, s in rank(customer_id, limit)]
    return Recommendations(customer_id=customer_id, items=items)


@app.post("/feedback", status_code=status.HTTP_202_ACCEPTED)
def feedback(event: Feedback) -> dict[str, str]:
    if event.product_id not in PRODUCTS:
        raise HTTPException(status_code=404, detail=f"unknown product {event.product_id}")
    return {"status": "accepted"}
