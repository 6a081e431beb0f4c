"""A stand-in for the Kubernetes API server, because no cluster can run here (no container
runtime, no kubelet). It is a real HTTP server in the test process, the only mock the Kubernetes
tests use, and answers the calls the platform makes through the official python client:

- server-side apply: PATCH `application/apply-patch+yaml` with `fieldManager` (and `force`);
- the discovery documents the DynamicClient reads (`/version`, `/api`, `/apis`, `/api/v1`,
  `/apis/apps/v1`, `/apis/batch/v1`) and lists of a namespace's objects by label selector
  (Deployments with their status, as a real list shows it);
- GET and DELETE of namespaced objects, 404 `Status` when absent;
- a toy deployment controller: a Deployment's status is computed when it is read. The first read
  after an apply shows the old generation (the controller has not caught up); after that, an image
  in `failing_images` never becomes available and, if `deadline_exceeded`, reports
  `ProgressDeadlineExceeded` as the real controller does after `progressDeadlineSeconds`;
- what dagster-k8s's `execute_k8s_job` calls: create a Job (POST), list Jobs and Pods by field or
  label selector, read a Job's `status`, read (and follow) a Pod's `log`, list events, delete.
  A toy job controller creates the Job's one Pod, which `kubelet` (tests/k8s_kubelet.py) runs as a
  local subprocess with exactly the container's environment; an image in `failing_images` stays
  in `ErrImagePull`.

It does not merge field ownership like a real server: an apply replaces the object's spec, which
is all the target relies on (it always applies complete manifests).
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

from tests.k8s_kubelet import ContainerConfigError, LocalKubelet

_PATH = re.compile(r"^/(api/v1|apis/[^/]+/[^/]+)/namespaces/([^/]+)/([^/]+)/([^/]+)$")
_COLLECTION = re.compile(r"^/(api/v1|apis/[^/]+/[^/]+)/namespaces/([^/]+)/([^/]+)$")
_SUBRESOURCE = re.compile(r"^(/(?:api/v1|apis/[^/]+/[^/]+)/namespaces/[^/]+/[^/]+/[^/]+)/(status|log)$")
APPLY = "application/apply-patch+yaml"
POD_DEADLINE_S = 300.0  # a pod without activeDeadlineSeconds is stopped after this, like a stuck node


@dataclass
class FakeApiServer:
    failing_images: set[str] = field(default_factory=set)
    deadline_exceeded: bool = True
    kubelet: LocalKubelet | None = None
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, str, dict[str, list[str]]]] = field(default_factory=list)
    created_jobs: list[dict[str, Any]] = field(default_factory=list)  # bodies as POSTed
    _reads_since_apply: dict[str, int] = field(default_factory=dict)
    _logs: dict[str, str] = field(default_factory=dict)
    _finished: dict[str, threading.Event] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def start(self) -> str:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                return

            def _reply(self, status: int, body: dict[str, Any] | str) -> None:
                text = isinstance(body, str)
                data = body.encode() if text else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if text else "application/json")
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

            def do_POST(self) -> None:
                self._handle("POST")

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

    def add(self, manifest: dict[str, Any]) -> None:
        """Store an object as if an operator had created it (e.g. a Secret)."""
        meta = manifest["metadata"]
        base = "/api/v1" if "/" not in manifest["apiVersion"] else f"/apis/{manifest['apiVersion']}"
        with self._lock:
            self.objects[f"{base}/namespaces/{meta['namespace']}/{_plural(manifest['kind'])}/{meta['name']}"] = manifest

    def handle(self, method: str, path: str, content_type: str, query: dict[str, list[str]],
               body: str) -> tuple[int, dict[str, Any] | str]:
        with self._lock:
            self.requests.append((method, path, content_type, query))
        if method == "GET" and path in DISCOVERY:
            return 200, DISCOVERY[path]
        subresource = _SUBRESOURCE.match(path)
        if subresource and subresource.group(2) == "log":
            return self._log(subresource.group(1), query)
        with self._lock:
            if subresource:
                found = self.objects.get(subresource.group(1))
                return (200, found) if found else (404, _status(404, f"{path} not found"))
            collection = _COLLECTION.match(path)
            if collection:
                return self._collection(method, path, collection.group(2), query, body)
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
            return 200, self._read(path, current)

    def _read(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        """An object as a read returns it: a Deployment's status is computed at each read."""
        if obj["kind"] == "Deployment":
            self._reads_since_apply[path] = self._reads_since_apply.get(path, 0) + 1
            obj["status"] = self._deployment_status(obj, self._reads_since_apply[path])
        return obj

    def _collection(self, method: str, path: str, namespace: str, query: dict[str, list[str]],
                    body: str) -> tuple[int, dict[str, Any]]:
        if method == "POST":
            return self._create(path, namespace, json.loads(body))
        items = [self._read(key, obj) for key, obj in self.objects.items() if key.rsplit("/", 1)[0] == path]
        for selector in query.get("fieldSelector", []) + query.get("labelSelector", []):
            key, _, value = selector.partition("=")
            items = [obj for obj in items if _selected(obj, key, value)]
        return 200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items}

    def _create(self, path: str, namespace: str, obj: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        name = obj["metadata"]["name"]
        if f"{path}/{name}" in self.objects:
            return 409, _status(409, f"{path}/{name} already exists")
        obj["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=_NOW)
        self.objects[f"{path}/{name}"] = obj
        if obj["kind"] == "Job":
            if self.kubelet is None:
                return 500, _status(500, "this server runs no pods: give it a kubelet")
            self.created_jobs.append(json.loads(json.dumps(obj)))
            obj["status"] = {"active": 1, "startTime": _NOW}
            self._start_pod(obj)
        return 201, obj

    def _start_pod(self, job: dict[str, Any]) -> None:
        """The job controller: one pod from the template, started by the kubelet in the background."""
        assert self.kubelet is not None
        meta, template = job["metadata"], job["spec"]["template"]
        name = f"{meta['name']}-{secrets.token_hex(3)[:5]}"
        labels = {**(template["metadata"].get("labels") or {}), "job-name": meta["name"],
                  "batch.kubernetes.io/job-name": meta["name"], "controller-uid": meta["uid"]}
        pod = {"apiVersion": "v1", "kind": "Pod", "spec": template["spec"],
               "metadata": {"name": name, "namespace": meta["namespace"], "labels": labels, "uid": str(uuid.uuid4())}}
        self.objects[f"/api/v1/namespaces/{meta['namespace']}/pods/{name}"] = pod
        self._finished[name] = threading.Event()
        [container] = pod["spec"]["containers"]
        if container["image"] in self.failing_images:
            pod["status"] = _waiting(container, "ErrImagePull", f"failed to pull image {container['image']}")
            return
        try:
            env = self.kubelet.environment(pod, self.get)
        except ContainerConfigError as exc:
            pod["status"] = _waiting(container, "CreateContainerConfigError", str(exc))
            return
        pod["status"] = _pod_status(container, {"running": {"startedAt": _NOW}}, ready=True)
        deadline = job["spec"].get("activeDeadlineSeconds") or POD_DEADLINE_S
        threading.Thread(target=self._run_pod, args=(job, pod, env, deadline), daemon=True).start()

    def _run_pod(self, job: dict[str, Any], pod: dict[str, Any], env: dict[str, str], deadline: float) -> None:
        assert self.kubelet is not None
        try:
            code, logs = self.kubelet.run(pod, env, deadline)
        except subprocess.TimeoutExpired:
            code, logs = 137, "stopped at the job's activeDeadlineSeconds\n"
        [container] = pod["spec"]["containers"]
        terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                      "startedAt": _NOW, "finishedAt": _NOW}
        with self._lock:
            self._logs[pod["metadata"]["name"]] = logs
            phase = "Succeeded" if code == 0 else "Failed"
            pod["status"] = _pod_status(container, {"terminated": terminated}, phase=phase)
            job["status"] = {"startTime": _NOW, "succeeded" if code == 0 else "failed": 1}
        self._finished[pod["metadata"]["name"]].set()

    def _log(self, pod_path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any] | str]:
        name = pod_path.rsplit("/", 1)[1]
        finished = self._finished.get(name)
        if finished is None:
            return 404, _status(404, f"pod {name} not found")
        if query.get("follow", [""])[0].lower() == "true":
            finished.wait(POD_DEADLINE_S)
        with self._lock:
            lines = self._logs.get(name, "").splitlines(keepends=True)
        tail = int(query.get("tailLines", ["0"])[0])
        return 200, "".join(lines[-tail:] if tail else lines)

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


_NOW = "2026-01-01T00:00:00Z"


def _resources(group_version: str, kinds: dict[str, str]) -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": [{"name": plural, "singularName": kind.lower(), "namespaced": True, "kind": kind,
                           "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
                          for plural, kind in kinds.items()]}


def _group(name: str) -> dict[str, Any]:
    version = {"groupVersion": f"{name}/v1", "version": "v1"}
    return {"name": name, "versions": [version], "preferredVersion": version}


DISCOVERY: dict[str, dict[str, Any]] = {
    "/version": {"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"},
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group("apps"), _group("batch")]},
    "/api/v1": _resources("v1", {"pods": "Pod", "services": "Service", "configmaps": "ConfigMap",
                                 "secrets": "Secret", "events": "Event"}),
    "/apis/apps/v1": _resources("apps/v1", {"deployments": "Deployment"}),
    "/apis/batch/v1": _resources("batch/v1", {"jobs": "Job"}),
}


def _plural(kind: str) -> str:
    return kind.lower() + "s"


def _selected(obj: dict[str, Any], key: str, value: str) -> bool:
    """`metadata.name=x` (field selector) or `label=x` (label selector): all the calls need."""
    if key == "metadata.name":
        return obj["metadata"]["name"] == value
    if key.startswith("involvedObject."):
        return False  # no events are recorded
    return (obj["metadata"].get("labels") or {}).get(key) == value


def _pod_status(container: dict[str, Any], state: dict[str, Any], ready: bool = False,
                phase: str = "Pending") -> dict[str, Any]:
    phase = "Running" if "running" in state else phase
    return {"phase": phase, "containerStatuses": [{
        "name": container["name"], "image": container["image"], "imageID": "", "ready": ready,
        "restartCount": 0, "state": state}]}


def _waiting(container: dict[str, Any], reason: str, message: str) -> dict[str, Any]:
    return _pod_status(container, {"waiting": {"reason": reason, "message": message}})


def _status(code: int, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Success" if code < 400 else "Failure",
            "message": message, "code": code}
