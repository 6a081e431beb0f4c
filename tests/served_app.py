"""A small served deliverable for the runtime tests and `make bench`: `/health`, `/work` and the
serving wrapper's `/-/metrics` (the metric names of platform_assets/serving_metrics.py, through
prometheus-client), on one or more ports of one process, so a benchmark can stand for hundreds
of endpoints without hundreds of interpreters.

Usage: python tests/served_app.py PORT [PORT ...]   (PLATFORM_VERSION names the version it serves)
`/work?status=500` answers that status, `/work?sleep=2` after two seconds; `/health` answers 503 once the file named by
`SERVED_APP_UNHEALTHY` exists.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from platform_assets.serving_metrics import BUCKETS, DURATION, IN_FLIGHT, METRICS_PATH, REQUESTS

REGISTRY = CollectorRegistry()
REQUESTS_TOTAL = Counter(REQUESTS.removesuffix("_total"), "requests", ["route", "method", "status"], registry=REGISTRY)
LATENCY = Histogram(DURATION, "latency", ["route"], buckets=BUCKETS, registry=REGISTRY)
BUSY = Gauge(IN_FLIGHT, "in flight", registry=REGISTRY)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *_: object) -> None:
        return

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == METRICS_PATH:
            self._reply(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif url.path == "/health":
            unhealthy = os.environ.get("SERVED_APP_UNHEALTHY")
            ok = not (unhealthy and Path(unhealthy).exists())
            self._json(200 if ok else 503, {"status": "ok" if ok else "degraded",
                                            "version": os.environ.get("PLATFORM_VERSION", "dev")})
        else:
            started = time.perf_counter()
            BUSY.inc()
            query = parse_qs(url.query)
            time.sleep(float(query.get("sleep", ["0"])[0]))
            status = int(query.get("status", ["200"])[0])
            self._json(status, {"path": url.path, "version": os.environ.get("PLATFORM_VERSION", "dev")})
            BUSY.dec()
            REQUESTS_TOTAL.labels(url.path, "GET", str(status)).inc()
            LATENCY.labels(url.path).observe(time.perf_counter() - started)

    def _json(self, status: int, payload: dict) -> None:
        self._reply(status, json.dumps(payload).encode(), "application/json")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main(ports: list[int]) -> None:
    servers = [ThreadingHTTPServer(("127.0.0.1", port), Handler) for port in ports]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main([int(port) for port in sys.argv[1:]])
