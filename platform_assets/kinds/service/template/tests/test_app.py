from fastapi.testclient import TestClient
from {{package}}.app import app

client = TestClient(app)


def test_health_reports_ok():
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_hello_greets_by_name():
    assert client.get("/hello/ada").json() == {"message": "hello, ada"}
