from fastapi.testclient import TestClient
from recommendations_api.app import app

client = TestClient(app)


def test_health_reports_ok():
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_recommendations_are_ranked_and_limited():
    body = client.get("/recommendations/c-42", params={"limit": 4}).json()
    scores = [item["score"] for item in body["items"]]
    assert body["customer_id"] == "c-42"
    assert len(scores) == 4
    assert scores == sorted(scores, reverse=True)


def test_recommendations_are_stable_per_customer():
    first = client.get("/recommendations/c-7").json()
    assert first == client.get("/recommendations/c-7").json()
    assert first != client.get("/recommendations/c-8").json()


def test_limit_is_validated():
    assert client.get("/recommendations/c-1", params={"limit": 0}).status_code == 422


def test_feedback_on_unknown_product_is_rejected():
    response = client.post("/feedback", json={"customer_id": "c-1", "product_id": "nope", "clicked": True})
    assert response.status_code == 404
