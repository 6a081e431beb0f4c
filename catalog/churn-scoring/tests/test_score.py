"""The job against a stand-in model endpoint on localhost (the real one is the platform's concern)."""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer

import pandas as pd
import pytest
from churn_scoring.score import model_records, run


class Model(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.headers["Authorization"] == "Bearer t0ken"
        rows = body["dataframe_records"]
        answer = {"version": "7", "predictions": [[1 - r["orders_count"] / 10, r["orders_count"] / 10] for r in rows]}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch):
    server = HTTPServer(("127.0.0.1", 0), Model)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("CHURN_MODEL_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("CHURN_MODEL_TOKEN", "t0ken")
    yield
    server.shutdown()


def test_one_score_per_customer(model: None) -> None:
    features = pd.DataFrame({"customer_id": ["a", "b", "c"], "orders_count": [1, 5, 9],
                             "churned": [True, False, False]})
    scores = run({"customer_features": features})
    assert list(scores["customer_id"]) == ["a", "b", "c"]
    assert list(scores["churn_probability"]) == pytest.approx([0.1, 0.5, 0.9])
    assert set(scores["model_version"]) == {"7"}


def test_the_label_is_not_sent_and_decimals_are_numbers() -> None:
    features = pd.DataFrame({"customer_id": ["a"], "total_spend": [Decimal("12.50")], "churned": [True]})
    [record] = model_records(features)
    assert record == {"customer_id": "a", "total_spend": 12.5}
