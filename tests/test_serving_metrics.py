"""Reading the serving wrapper's metrics: what prometheus-client writes, parsed and differenced."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from platform_assets.serving_metrics import BUCKETS, DURATION, IN_FLIGHT, REQUESTS, figures, parse, quantile


def registry() -> tuple[CollectorRegistry, Counter, Histogram, Gauge]:
    reg = CollectorRegistry()
    requests = Counter(REQUESTS.removesuffix("_total"), "requests", ["route", "method", "status"], registry=reg)
    duration = Histogram(DURATION, "latency", ["route"], buckets=BUCKETS, registry=reg)
    in_flight = Gauge(IN_FLIGHT, "in flight", registry=reg)
    return reg, requests, duration, in_flight


def test_two_scrapes_give_rate_error_ratio_and_quantiles() -> None:
    reg, requests, duration, in_flight = registry()
    requests.labels("/health", "GET", "200").inc(50)  # the platform's own route: not the service's traffic
    before = parse(generate_latest(reg).decode(), at=100.0)
    for _ in range(90):
        requests.labels("/items", "GET", "200").inc()
        duration.labels("/items").observe(0.02)
    for _ in range(10):
        requests.labels("/items", "GET", "500").inc()
        duration.labels("/items").observe(0.8)
    in_flight.set(3)

    seen = figures(before, parse(generate_latest(reg).decode(), at=110.0))

    assert (seen.requests, seen.rate_per_s, seen.error_ratio, seen.in_flight) == (100, 10.0, 0.1, 3)
    assert 0.01 < seen.p50_s <= 0.025, "half the requests took 20 ms: inside the 10-25 ms bucket"
    assert 0.5 < seen.p95_s <= 1.0, "the slowest tenth took 800 ms: p95 is in the 0.5-1 s bucket"


def test_a_restart_resets_the_counters_and_an_idle_window_has_no_ratio() -> None:
    reg, requests, duration, _ = registry()
    requests.labels("/a", "GET", "200").inc(40)
    duration.labels("/a").observe(0.003)
    busy = parse(generate_latest(reg).decode(), at=0.0)
    fresh_reg, fresh_requests, _, _ = registry()
    fresh_requests.labels("/a", "GET", "200").inc(4)

    after_restart = figures(busy, parse(generate_latest(fresh_reg).decode(), at=4.0))
    idle = figures(busy, busy)

    assert (after_restart.requests, after_restart.rate_per_s) == (4, 1.0)
    assert idle.error_ratio is None and idle.p50_s is None


@pytest.mark.parametrize(("q", "expected"), [(0.5, 0.15), (0.9, 0.19), (1.0, 0.2)])
def test_quantile_interpolates_inside_its_bucket(q: float, expected: float) -> None:
    assert quantile(q, [(0.1, 0.0), (0.2, 10.0), (float("inf"), 10.0)]) == pytest.approx(expected)
