"""HTTP interface. The OpenAPI contract FastAPI derives from this module is the service's API."""

from __future__ import annotations

import os

from fastapi import FastAPI, HTTPException, Query, status
from pydantic import BaseModel, Field

from recommendations_api import churn_model
from recommendations_api.catalog import PRODUCTS, rank

app = FastAPI(title="recommendations-api", version="1.3.0")
RETENTION_THRESHOLD = 0.5


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


class CustomerProfile(BaseModel):
    customer_id: str
    features: dict[str, float | int | str | bool | None] = Field(
        description="the churn model's input features; null for a missing value (the model takes it as NaN)")


class ChurnRisk(BaseModel):
    customer_id: str
    churn_probability: float = Field(ge=0, le=1)
    model_version: str
    retention_offer: bool


@app.post("/churn-risk", response_model=ChurnRisk)
def churn_risk(profile: CustomerProfile) -> ChurnRisk:
    """Scores the customer with the churn model; 503 while the model cannot answer."""
    try:
        probability, version = churn_model.score(profile.features)
    except churn_model.ModelUnavailable as exc:
        raise HTTPException(status_code=status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from exc
    return ChurnRisk(customer_id=profile.customer_id, churn_probability=probability, model_version=version,
                     retention_offer=probability >= RETENTION_THRESHOLD)
