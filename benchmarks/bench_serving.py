"""The serving wrapper's cost: p50 latency of a trivial endpoint, wrapped and unwrapped.

```
.venv/bin/python benchmarks/bench_serving.py [--requests 2000] [--rounds 5] [--json PATH] [--check]
```

Two uvicorn processes serve the same FastAPI app (`/items/{item_id}` returning a small JSON
object): one as `uvicorn bench_serving:app`, one behind the platform's wrapper as deploys start
it (`uvicorn --factory platform_assets.serving:from_env`, platform_assets/serving_metrics.py
`served_command`). Both run without access logs (a deploy keeps uvicorn's default; access logging
costs both sides the same). One client thread sends sequential requests over one keep-alive
connection per server, interleaved request by request (the order flipping every pair), so load
from other work on the machine hits both sides alike; each request's latency is measured in the
client (perf_counter, request written to response read). Reported: p50 and p95 of each side over
all requests, the p50 ratio (wrapped / unwrapped) with the difference in microseconds, and the
spread of the per-round p50 ratios. The budget is a ratio under 1.10; `--check` exits 1 over it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fastapi import FastAPI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from platform_assets.serving_metrics import served_command  # noqa: E402
from resources.deploy_target import free_port  # noqa: E402

BUDGET = 1.10
app = FastAPI()


@app.get("/items/{item_id}")
def item(item_id: int) -> dict[str, int]:
    return {"item_id": item_id}


def start(wrapped: bool) -> tuple[subprocess.Popen, int]:
    port = free_port()
    if wrapped:
        command, env = served_command(sys.executable, "bench_serving:app", "127.0.0.1", str(port))
    else:
        command, env = [sys.executable, "-m", "uvicorn", "bench_serving:app", "--host", "127.0.0.1",
                        "--port", str(port)], {}
    process = subprocess.Popen([*command, "--no-access-log", "--log-level", "warning"], cwd=HERE,
                               env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/items/0")
            connection.getresponse().read()
            return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the {'wrapped' if wrapped else 'unwrapped'} server did not start")


def timed(connection: http.client.HTTPConnection, n: int) -> float:
    started = time.perf_counter()
    connection.request("GET", f"/items/{n % 100}")
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise SystemExit(f"HTTP {response.status}")
    return time.perf_counter() - started


def interleaved(connections: dict[str, http.client.HTTPConnection], count: int) -> dict[str, list[float]]:
    """`count` requests to each side, alternating, the side that goes first flipping every pair."""
    latencies: dict[str, list[float]] = {side: [] for side in connections}
    sides = list(connections)
    for n in range(count):
        for side in sides if n % 2 else reversed(sides):
            latencies[side].append(timed(connections[side], n))
    return latencies


def p(q: float, values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per side per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 when over budget")
    args = parser.parse_args()
    servers = {side: start(side == "wrapped") for side in ("unwrapped", "wrapped")}
    try:
        connections = {side: http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                       for side, (_, port) in servers.items()}
        interleaved(connections, 500)  # warm-up: imports, route caches, connections
        rounds = [interleaved(connections, args.requests) for _ in range(args.rounds)]
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=10)
    latencies = {side: [t for one in rounds for t in one[side]] for side in servers}
    p50 = {side: statistics.median(values) for side, values in latencies.items()}
    ratio = p50["wrapped"] / p50["unwrapped"]
    per_round = sorted(statistics.median(one["wrapped"]) / statistics.median(one["unwrapped"]) for one in rounds)
    for side, values in latencies.items():
        print(f"{side:10} p50 {p50[side] * 1e6:8.1f} us   p95 {p(95, values) * 1e6:8.1f} us   ({len(values)} requests)")
    print(f"RATIO p50 {ratio:.3f} (+{(p50['wrapped'] - p50['unwrapped']) * 1e6:.1f} us per request); "
          f"per round {per_round[0]:.3f}-{per_round[-1]:.3f}")
    verdict = "OK" if ratio < BUDGET else "OVER BUDGET"
    print(f"VERDICT wrapper p50 {ratio:.3f}x (budget {BUDGET:.2f}x): {verdict}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"p50_s": p50, "p95_s": {s: p(95, v) for s, v in latencies.items()},
                                         "ratio": ratio, "round_ratios": per_round,
                                         "requests": {s: len(v) for s, v in latencies.items()}},
                                        indent=2))
    return 1 if args.check and ratio >= BUDGET else 0


if __name__ == "__main__":
    sys.exit(main())
