"""The gateway of one local environment: `http://127.0.0.1:<port>/<name>/...` reaches the version
of `<name>` that serves now, whatever port that version runs on.

Run by the local deploy target (resources/gateway.py) as
`python -m resources.gateway_server --deployments DIR --port N --token-file FILE`.

Routes are read from each deliverable's `current.json` in DIR, which the target writes only once
a new version is healthy. The target then asks the gateway to re-read that route
(`POST /-/gateway/routes/<name>`, with the admin token) and waits for the requests still in flight
to the old version (`GET /-/gateway/drain?upstream=...`) before stopping it, so the switch is one
assignment here and no request is cut. When a connection is refused because a version went away
(a restart moved it), the route is re-read and the request retried once on the new one.

Why uvicorn and httpx: both are the platform's dependencies already (every service and model
server runs on uvicorn), and they own the hard parts of a proxy (HTTP/1.1 parsing, keep-alive,
chunked streaming both ways); a stdlib asyncio proxy would re-implement those, and aiohttp would
be a second server stack to know. Deliverable names are DNS labels, so `/-/...` never collides.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

ADMIN = "/-/gateway"
MAX_BODY = 32 * 1024 * 1024
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade"})
NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length"}  # the upstream request gets its own
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # a deliverable's name: a DNS label


def serving_id(deployments: Path) -> str:
    """Names the deployments folder a gateway serves without telling its path to callers."""
    return hashlib.sha256(str(deployments.resolve()).encode()).hexdigest()[:16]


def read_route(deployments: Path, name: str) -> str | None:
    """The direct URL of the version of `name` that serves (None when nothing does)."""
    if not NAME.match(name):
        return None
    try:
        return json.loads((deployments / name / "current.json").read_text())["direct_url"]
    except (OSError, ValueError, KeyError):
        return None


class Gateway:
    """The ASGI app: the route table, the requests in flight per upstream, the admin calls."""

    def __init__(self, deployments: Path, token: str) -> None:
        self.deployments = deployments
        self.token = token
        self.routes: dict[str, str] = {}
        self.in_flight: dict[str, int] = {}
        self.client: Any = None
        for current in deployments.glob("*/current.json"):
            self.reload(current.parent.name)

    def reload(self, name: str) -> str | None:
        upstream = read_route(self.deployments, name)
        if upstream is None:
            self.routes.pop(name, None)
        else:
            self.routes[name] = upstream
        return upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            if scope["path"].startswith(ADMIN + "/") or scope["path"] == ADMIN:
                await self._admin(scope, send)
            else:
                await self._proxy(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        import httpx

        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Idle upstream connections are dropped before uvicorn's own 5 s keep-alive timeout
                # closes them, so a request is never sent on a connection the server is closing.
                self.client = httpx.AsyncClient(
                    timeout=httpx.Timeout(connect=5.0, read=300.0, write=60.0, pool=30.0),
                    limits=httpx.Limits(max_connections=512, max_keepalive_connections=64, keepalive_expiry=2.0),
                    follow_redirects=False)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _admin(self, scope: Scope, send: Send) -> None:
        path = scope["path"][len(ADMIN):]
        if path == "/health":
            await _json(send, 200, {"status": "ok", "routes": len(self.routes), "serves": serving_id(self.deployments)})
            return
        headers = dict(scope["headers"])
        given = headers.get(b"authorization", b"").decode()
        if not hmac.compare_digest(given, f"Bearer {self.token}"):
            await _json(send, 401, {"detail": "the gateway's admin calls need its token"})
            return
        if path.startswith("/routes/") and scope["method"] == "POST":
            name = path.removeprefix("/routes/")
            await _json(send, 200, {"name": name, "upstream": self.reload(name)})
        elif path == "/routes":
            await _json(send, 200, {"routes": self.routes, "in_flight": self.in_flight})
        elif path == "/drain":
            query = parse_qs(scope["query_string"].decode())
            upstream = query.get("upstream", [""])[0]
            deadline = time.monotonic() + float(query.get("timeout_s", ["30"])[0])
            while self.in_flight.get(upstream) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            left = self.in_flight.get(upstream, 0)
            await _json(send, 200 if not left else 504, {"upstream": upstream, "in_flight": left})
        else:
            await _json(send, 404, {"detail": f"no admin call {scope['method']} {scope['path']}"})

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        import httpx

        name = scope["path"][1:].partition("/")[0]
        if name not in self.routes and self.reload(name) is None:
            await _json(send, 404, {"detail": f"nothing named '{name}' is served here; the address of a "
                                              "deliverable is /<name>/..."})
            return
        body = await _body(receive)
        if body is None:
            await _json(send, 413, {"detail": f"request bodies are limited to {MAX_BODY} bytes here"})
            return
        raw_path = scope.get("raw_path") or scope["path"].encode()
        tail = raw_path[len(name) + 1:] or b"/"
        query = scope.get("query_string") or b""
        headers = _forwarded_headers(scope, name)
        method = scope["method"]
        for attempt in (1, 2):
            upstream = self.routes.get(name)
            if upstream is None:
                break
            url = upstream + tail.decode("latin-1") + (("?" + query.decode("latin-1")) if query else "")
            self.in_flight[upstream] = self.in_flight.get(upstream, 0) + 1
            try:
                request = self.client.build_request(method, url, headers=headers, content=body)
                response = await self.client.send(request, stream=True)
            except httpx.ConnectError:
                self._done(upstream)
                if attempt == 1 and self.reload(name) not in (None, upstream):
                    continue  # the route changed while this request was on its way: try the new version
                await _json(send, 502, {"detail": f"{name} is not answering at {upstream}; the platform's "
                                                  "runtime sensor restarts it"})
                return
            except httpx.TimeoutException:
                self._done(upstream)
                await _json(send, 504, {"detail": f"{name} did not answer in time"})
                return
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                # A kept-alive connection the upstream had closed (uvicorn closes one after an
                # unhandled exception in the app) fails on reuse before any answer.
                self._done(upstream)
                if attempt == 1 and method in IDEMPOTENT:
                    continue  # nothing happened: send it again, on a new connection
                await _json(send, 502, {"detail": f"{name} closed the connection without answering"})
                return
            try:
                await send({"type": "http.response.start", "status": response.status_code,
                            "headers": [(k, v) for k, v in response.headers.raw
                                        if k.decode("latin-1").lower() not in HOP_BY_HOP]})
                async for chunk in response.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            finally:
                await response.aclose()
                self._done(upstream)
            return
        await _json(send, 404, {"detail": f"nothing named '{name}' is served here any more"})

    def _done(self, upstream: str) -> None:
        left = self.in_flight.get(upstream, 1) - 1
        if left > 0:
            self.in_flight[upstream] = left
        else:
            self.in_flight.pop(upstream, None)


def _forwarded_headers(scope: Scope, name: str) -> list[tuple[bytes, bytes]]:
    """The client's headers without hop-by-hop ones, plus where the request came from and the
    prefix it was served under (for an app that builds links to itself)."""
    headers = [(k, v) for k, v in scope["headers"] if k.lower().decode() not in NOT_FORWARDED]
    client = scope.get("client") or ("", 0)
    host = dict(scope["headers"]).get(b"host", b"")
    return [*headers, (b"x-forwarded-for", client[0].encode()), (b"x-forwarded-host", host),
            (b"x-forwarded-proto", b"http"), (b"x-forwarded-prefix", f"/{name}".encode())]


async def _body(receive: Receive) -> bytes | None:
    """The whole request body (kept, so a refused connection can be retried), None when too big."""
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="the local gateway of one environment")
    parser.add_argument("--deployments", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-file", type=Path, required=True)
    args = parser.parse_args(argv)
    app = Gateway(args.deployments, args.token_file.read_text().strip())
    # Clients keep connections to the gateway longer than their own idle expiry (5 s for httpx,
    # urllib3 and uvicorn's clients), so the gateway never closes one a client is about to reuse.
    # The upstream's own Date and Server headers pass through; the gateway adds none.
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", timeout_keep_alive=30,
                lifespan="on", server_header=False, date_header=False)


if __name__ == "__main__":
    main()
