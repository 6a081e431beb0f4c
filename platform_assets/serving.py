"""The platform's serving wrapper: every deliverable that serves HTTP runs behind it.

`python -m uvicorn --factory platform_assets.serving:from_env` serves the ASGI app named by
`PLATFORM_SERVED_APP` (`module:attribute`) and records, with prometheus-client, what
serving_metrics.py names: requests by route template, method and status, the latency histogram
by route template, and requests in flight. It answers `GET /-/metrics` itself and hands every
other request, the lifespan and websockets to the app untouched, so the app's own routes (a
`/metrics` of its own included) stay its own.

The route label is the template the app's router matched (`/items/{item_id}`, read from the ASGI
scope Starlette fills in), never the raw path: label cardinality stays bounded by the app's
routes whatever clients send; anything the router did not match is `<unmatched>`.

This module runs only in serving processes (the deployed service, the model server): it imports
prometheus-client at the top, and nothing of Dagster.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from platform_assets.serving_metrics import BUCKETS, DURATION, IN_FLIGHT, METRICS_PATH, REQUESTS, SERVED_APP_ENV

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNMATCHED = "<unmatched>"


class ServingMetrics:
    """ASGI middleware recording the platform's request metrics into a registry of its own."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry | None = None) -> None:
        self.app = app
        self.registry = registry or CollectorRegistry()
        self._requests = Counter(REQUESTS.removesuffix("_total"), "HTTP requests served, by route template, "
                                 "method and status", ["route", "method", "status"], registry=self.registry)
        self._duration = Histogram(DURATION, "HTTP request latency by route template", ["route"],
                                   buckets=BUCKETS, registry=self.registry)
        self._in_flight = Gauge(IN_FLIGHT, "HTTP requests being served", registry=self.registry)
        # Labelled children by label values: `labels()` takes a lock and builds a key on every call.
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == METRICS_PATH and scope["method"] in ("GET", "HEAD"):
            await self._metrics(send)
            return
        status = 500  # what the server answers when the app raises before responding

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self._in_flight.inc()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, recording_send)
        finally:
            elapsed = time.perf_counter() - started
            self._in_flight.dec()
            self._record(route_template(scope), scope["method"], status, elapsed)

    def _record(self, route: str, method: str, status: int, elapsed: float) -> None:
        counter = self._counters.get((route, method, status))
        if counter is None:
            counter = self._counters[(route, method, status)] = self._requests.labels(route, method, str(status))
        histogram = self._histograms.get(route)
        if histogram is None:
            histogram = self._histograms[route] = self._duration.labels(route)
        counter.inc()
        histogram.observe(elapsed)

    async def _metrics(self, send: Send) -> None:
        body = generate_latest(self.registry)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def route_template(scope: Scope) -> str:
    """The template of the route the app's router matched (Starlette and FastAPI put it in the scope)."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else UNMATCHED


def from_env() -> ServingMetrics:
    """The uvicorn factory: the app named by PLATFORM_SERVED_APP, behind the wrapper."""
    from uvicorn.importer import import_from_string

    target = os.environ.get(SERVED_APP_ENV)
    if not target:
        raise RuntimeError(f"{SERVED_APP_ENV} is not set: it names the ASGI app to serve, as module:attribute")
    return ServingMetrics(import_from_string(target))
