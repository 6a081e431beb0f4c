"""The signals every served deliverable exposes, and the figures two scrapes of them give.

The platform's serving wrapper (services and model servers alike) answers `GET /-/metrics` in
Prometheus' text format with three metrics: `platform_http_requests_total` (labels `route`,
`method`, `status`), the histogram `platform_http_request_duration_seconds` (label `route`) and
the gauge `platform_http_requests_in_flight`. Prometheus scrapes them on Kubernetes; locally the
runtime sensor and the post-deploy verification read them here. Rates and quantiles come from the
difference of two scrapes, as Prometheus' `rate()` and `histogram_quantile()` compute them.
`served_command` is how a deploy starts an app behind the wrapper (platform_assets/serving.py).
"""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

METRICS_PATH = "/-/metrics"
SAMPLE_PATH = "/-/sample"  # a model server's sample of served rows, for the platform's drift check
REQUESTS = "platform_http_requests_total"
DURATION = "platform_http_request_duration_seconds"
IN_FLIGHT = "platform_http_requests_in_flight"
SERVED_APP_ENV = "PLATFORM_SERVED_APP"  # the app the wrapper serves, as module:attribute
WRAPPER = "platform_assets.serving:from_env"
# Latency buckets (seconds): fine below 100 ms, where a web endpoint's p50 lives.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def served_command(python: str, app: str, host: str, port: str) -> tuple[list[str], dict[str, str]]:
    """The command and environment that serve `app` (module:attribute) with uvicorn behind the wrapper."""
    return ([python, "-m", "uvicorn", "--factory", WRAPPER, "--host", host, "--port", port],
            {SERVED_APP_ENV: app})


@dataclass(frozen=True)
class Snapshot:
    """Cumulative counters of one scrape (platform routes such as /-/metrics and /health excluded)."""

    at: float
    requests: float
    errors: float  # responses with a 5xx status
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), +Inf last
    in_flight: float


@dataclass(frozen=True)
class Figures:
    """What happened between two scrapes."""

    requests: float
    rate_per_s: float
    error_ratio: float | None  # None when there was no request
    p50_s: float | None
    p95_s: float | None
    in_flight: float

    def as_metadata(self) -> dict[str, float | None]:
        return {"requests": self.requests, "rate_per_s": round(self.rate_per_s, 3),
                "error_ratio": None if self.error_ratio is None else round(self.error_ratio, 4),
                "p50_ms": _ms(self.p50_s), "p95_ms": _ms(self.p95_s), "in_flight": self.in_flight}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


PLATFORM_ROUTES = frozenset({METRICS_PATH, SAMPLE_PATH, "/health"})


def parse(text: str, at: float | None = None) -> Snapshot:
    """A scrape's text as counters summed over the deliverable's own routes."""
    from prometheus_client.parser import text_string_to_metric_families

    requests = errors = in_flight = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            route = sample.labels.get("route")
            if route in PLATFORM_ROUTES:
                continue
            if sample.name == REQUESTS:
                requests += sample.value
                if sample.labels.get("status", "").startswith("5"):
                    errors += sample.value
            elif sample.name == f"{DURATION}_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name == IN_FLIGHT:
                in_flight += sample.value
    return Snapshot(at if at is not None else time.time(), requests, errors, tuple(sorted(buckets.items())),
                    in_flight)


def scrape(base_url: str, timeout_s: float = 2.0) -> Snapshot | None:
    """One scrape of `<base_url>/-/metrics`; None when nothing answers there."""
    try:
        with urllib.request.urlopen(base_url.rstrip("/") + METRICS_PATH, timeout=timeout_s) as response:
            return parse(response.read().decode(errors="replace"))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def figures(before: Snapshot, after: Snapshot) -> Figures:
    """Rate, error ratio and latency quantiles between two scrapes (a restart resets the counters:
    then the later scrape alone counts)."""
    if after.requests < before.requests:
        before = Snapshot(before.at, 0.0, 0.0, tuple((b, 0.0) for b, _ in after.buckets), 0.0)
    requests = after.requests - before.requests
    elapsed = max(after.at - before.at, 1e-9)
    earlier = dict(before.buckets)
    deltas = [(bound, count - earlier.get(bound, 0.0)) for bound, count in after.buckets]
    return Figures(requests, requests / elapsed, (after.errors - before.errors) / requests if requests else None,
                   quantile(0.5, deltas), quantile(0.95, deltas), after.in_flight)


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """`histogram_quantile`: linear interpolation inside the bucket that holds the q-th observation."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the last finite bucket: its bound is all that is known
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound
