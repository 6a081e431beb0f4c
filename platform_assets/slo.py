"""A spec's `slo:` and its verification window, the same for every kind that serves.

After the switch (platform_assets/post_deploy.py), a verification window (`window_s`) drives the
spec's smoke requests against the version just deployed and reads the serving wrapper's metrics
before and after it (serving_metrics.scrape and figures): the error ratio and p95 latency over the
window, real traffic included. A breach, or a smoke request answered with another status than expected,
fails the `healthy` result, which rolls the environment back through the stages' auto-rollback,
the measured figures in the check, the observation and the materialization: what Argo Rollouts'
analysis does with a Prometheus query, here with two scrapes of the version's own endpoint.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from platform_assets.serving_metrics import METRICS_PATH, Figures, figures, scrape
from platform_assets.specs import Seconds, StrictModel

PACE_S = 0.05  # between rounds of smoke requests: a steady trickle, not a load test
SMOKE_TIMEOUT_S = 10.0


class SmokeRequest(StrictModel):
    """One request the verification window sends, e.g. `{method: GET, path: /items, expect_status: 200}`."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: str = Field(pattern=r"^/", description="path and query, e.g. /recommendations/c-1?limit=2")
    body: Any = Field(default=None, description="a JSON body")
    expect_status: int = Field(default=200, ge=100, le=599)

    def describe(self) -> str:
        return f"{self.method} {self.path}"


class Slo(StrictModel):
    """What a version must hold during its verification window after a deploy."""

    error_ratio_max: float | None = Field(default=None, ge=0, le=1, description="5xx responses over requests")
    p95_ms_max: float | None = Field(default=None, gt=0, description="95th percentile latency, milliseconds")
    window_s: Seconds = Field(default=20.0, le=600)
    smoke: list[SmokeRequest] = Field(default_factory=list)


def verify(slo: Slo, url: str, headers: Mapping[str, str]) -> tuple[bool, str, dict[str, Any]]:
    """Drive the smoke requests for the window and judge the figures: (held, summary, record)."""
    before = scrape(url)
    failures = drive(slo, url, headers) if before is not None else Counter()
    after = scrape(url) if before is not None else None
    if before is None or after is None:
        return False, f"SLO not verified: no metrics at {url}{METRICS_PATH}", {"verified": False}
    seen = figures(before, after)
    breaches = breaches_of(slo, seen) + [f"{what} answered {status} {count}x, expected {expected}"
                                         for (what, status, expected), count in sorted(failures.items())]
    record = {"verified": True, "window_s": slo.window_s, **seen.as_metadata(),
              "error_ratio_max": slo.error_ratio_max, "p95_ms_max": slo.p95_ms_max, "breaches": breaches}
    measured = (f"{seen.requests:g} requests in {slo.window_s:g}s, error ratio "
                f"{_show(seen.error_ratio)}, p95 {_show(record['p95_ms'])} ms")
    if breaches:
        return False, f"SLO breached ({measured}): {'; '.join(breaches)}", record
    return True, f"SLO held ({measured})", record


def breaches_of(slo: Slo, seen: Figures) -> list[str]:
    breaches = []
    if slo.error_ratio_max is not None and seen.error_ratio is not None and seen.error_ratio > slo.error_ratio_max:
        breaches.append(f"error ratio {seen.error_ratio:.4f} > {slo.error_ratio_max:g}")
    if slo.p95_ms_max is not None and seen.p95_s is not None and seen.p95_s * 1000 > slo.p95_ms_max:
        breaches.append(f"p95 {seen.p95_s * 1000:.1f} ms > {slo.p95_ms_max:g} ms")
    return breaches


def drive(slo: Slo, url: str, headers: Mapping[str, str]) -> Counter[tuple[str, int, int]]:
    """Send the smoke requests round after round until the window closes; count unexpected answers
    by (request, status, expected status)."""
    failures: Counter[tuple[str, int, int]] = Counter()
    deadline = time.monotonic() + slo.window_s
    while True:
        for smoke in slo.smoke:
            status = send(url, smoke, headers)
            if status != smoke.expect_status:
                failures[(smoke.describe(), status, smoke.expect_status)] += 1
        if time.monotonic() + PACE_S >= deadline:
            return failures
        time.sleep(PACE_S)


def send(url: str, smoke: SmokeRequest, headers: Mapping[str, str]) -> int:
    """The status a smoke request is answered with (0 when nothing answered)."""
    data = None if smoke.body is None else json.dumps(smoke.body).encode()
    request = urllib.request.Request(url.rstrip("/") + smoke.path, data=data, method=smoke.method,
                                     headers={**headers, **({"Content-Type": "application/json"} if data else {})})
    try:
        with urllib.request.urlopen(request, timeout=SMOKE_TIMEOUT_S) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


def _show(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"
