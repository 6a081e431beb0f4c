"""A stand-in for the Kubernetes API server, because no cluster can run here (no container
runtime, no kubelet). It is a real HTTP server in the test process that answers the calls the
Kubernetes target makes through the official python client:

- server-side apply: PATCH `application/apply-patch+yaml` with `fieldManager` (and `force`);
- GET and DELETE of namespaced objects, 404 `Status` when absent;
- a toy deployment controller: a Deployment's status is computed when it is read. The first read
  after an apply shows the old generation (the controller has not caught up); after that, an image
  in `failing_images` never becomes available and, if `deadline_exceeded`, reports
  `ProgressDeadlineExceeded` as the real controller does after `progressDeadlineSeconds`.

It does not merge field ownership like a real server: an apply replaces the object's spec, which
is all the target relies on (it always applies complete manifests).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

_PATH = re.compile(r"^/(api/v1|apis/[^/]+/[^/]+)/namespaces/([^/]+)/([^/]+)/([^/]+)$")
APPLY = "application/apply-patch+yaml"


@dataclass
class FakeApiServer:
    failing_images: set[str] = field(default_factory=set)
    deadline_exceeded: bool = True
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, str, dict[str, list[str]]]] = field(default_factory=list)
    _reads_since_apply: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> str:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                return

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                status, reply = server.handle(method, url.path, self.headers.get("Content-Type", ""),
                                              parse_qs(url.query), body)
                self._reply(status, reply)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def kubeconfig(self, path: Path, host: str) -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": host}}],
            "users": [{"name": "test", "user": {"token": "test-token"}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        }))
        return path

    def get(self, kind_plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return next((obj for path, obj in self.objects.items()
                     if path.endswith(f"/namespaces/{namespace}/{kind_plural}/{name}")), None)

    def handle(self, method: str, path: str, content_type: str, query: dict[str, list[str]],
               body: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append((method, path, content_type, query))
            if not _PATH.match(path):
                return 404, _status(404, f"no such path {path}")
            if method == "PATCH":
                return self._apply(path, content_type, query, body)
            current = self.objects.get(path)
            if current is None:
                return 404, _status(404, f"{path} not found")
            if method == "DELETE":
                del self.objects[path]
                return 200, _status(200, "deleted")
            if current["kind"] == "Deployment":
                self._reads_since_apply[path] = self._reads_since_apply.get(path, 0) + 1
                current["status"] = self._deployment_status(current, self._reads_since_apply[path])
            return 200, current

    def _apply(self, path: str, content_type: str, query: dict[str, list[str]], body: str) -> tuple[int, dict]:
        if content_type != APPLY:
            return 415, _status(415, f"this server only takes server-side apply, not {content_type}")
        if not query.get("fieldManager"):
            return 400, _status(400, "fieldManager is required for apply patch")
        applied = yaml.safe_load(body)
        old = self.objects.get(path)
        meta = applied["metadata"]
        if old:
            meta["uid"] = old["metadata"]["uid"]
            spec_changed = old.get("spec") != applied.get("spec") or old.get("data") != applied.get("data")
            meta["generation"] = old["metadata"]["generation"] + (1 if spec_changed else 0)
            applied["status"] = old.get("status", {})
        else:
            meta.update(uid=str(uuid.uuid4()), generation=1)
        self.objects[path] = applied
        self._reads_since_apply[path] = 0
        return (200 if old else 201), applied

    def _deployment_status(self, deployment: dict[str, Any], reads: int) -> dict[str, Any]:
        generation = deployment["metadata"]["generation"]
        old_status = deployment.get("status") or {}
        if reads == 1 and old_status:
            return old_status  # the controller has not seen the new generation yet
        wanted = deployment["spec"].get("replicas", 1)
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        if image not in self.failing_images:
            return {"observedGeneration": generation, "replicas": wanted, "updatedReplicas": wanted,
                    "readyReplicas": wanted, "availableReplicas": wanted,
                    "conditions": [{"type": "Available", "status": "True"},
                                   {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}
        previous_available = old_status.get("availableReplicas", 0)
        conditions = [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]
        if self.deadline_exceeded:
            conditions = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                           "message": f'ReplicaSet "{deployment["metadata"]["name"]}" has timed out progressing.'}]
        return {"observedGeneration": generation, "replicas": previous_available + 1, "updatedReplicas": 1,
                "readyReplicas": previous_available, "availableReplicas": previous_available,
                "unavailableReplicas": 1, "conditions": conditions}


def _status(code: int, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Success" if code < 400 else "Failure",
            "message": message, "code": code}
