import os

import pytest
from fastapi.testclient import TestClient
from recommendations_api import churn_model
from recommendations_api.app import app

client = TestClient(app)

PROFILE = {
    "customer_id": "c-1",
    "features": {
        "country": "US", "plan": "basic", "marketing_opt_in": False, "tenure_days": 132.0, "orders_count": 4.0,
        "total_spend": 157.07, "avg_order_value": 39.27, "returned_ratio": 0.0, "cancelled_ratio": 0.0,
        "orders_365d": 4.0, "spend_365d": 157.07, "events_30d": 1.0, "cart_adds_30d": 0.0,
        "distinct_products_viewed": 10.0, "days_since_last_event": 19.0,
    },
}


def test_churn_risk_is_unavailable_without_a_model(monkeypatch):
    monkeypatch.delenv(churn_model.URL_ENV, raising=False)
    response = client.post("/churn-risk", json=PROFILE)
    assert response.status_code == 503
    assert churn_model.URL_ENV in response.json()["detail"]


def test_churn_risk_offers_retention_above_the_threshold(monkeypatch):
    monkeypatch.setattr(churn_model, "score", lambda features: (0.8, "7"))
    body = client.post("/churn-risk", json=PROFILE).json()
    assert body == {"customer_id": "c-1", "churn_probability": 0.8, "model_version": "7", "retention_offer": True}


@pytest.mark.skipif(not os.environ.get(churn_model.URL_ENV), reason="no churn model endpoint given (staging)")
def test_contract_with_the_deployed_churn_model():
    """Runs against the model's staging endpoint, which the platform passes to the build's tests."""
    probability, version = churn_model.score(PROFILE["features"])
    assert 0.0 <= probability <= 1.0 and version
