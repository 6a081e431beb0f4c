"""What deploy targets offer the handlers, and the helpers they share.

Two families: process targets (`LocalProcessTarget`) run a `ProcessLaunch` on this machine;
manifest targets (`ManifestTarget`: Kubernetes, GitOps) run a `Workload`, one immutable image per
version, rendered to Kubernetes manifests by one function per workload kind.
"""

from __future__ import annotations

import hashlib
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from platform_assets.settings import ComputeProfile


class DeployFailed(Exception):
    """The new version did not come up; the environment still runs what it ran before."""

    def __init__(self, message: str, metadata: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.metadata = metadata or {}


@dataclass(frozen=True)
class ProcessLaunch:
    """How to run one version; `{port}` in `command` is replaced by the port the target picks."""

    deliverable: str
    version: str
    command: list[str]
    health_path: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    # Values of the secrets its spec declares: in its environment, redacted from its log tail.
    secret_env: dict[str, str] = field(default_factory=dict)
    startup_timeout_s: float = 30.0

    def config_digest(self) -> str:
        """Identifies the command and environment (secrets included, but only as a digest)."""
        config = {"command": self.command, "env": self.env, "health": self.health_path}
        if self.secret_env:
            config["secret_env"] = self.secret_env
        payload = json.dumps(config, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Workload:
    """One version of a deliverable as a container workload, independent of where it runs.

    `kind` picks the renderer (resources/k8s_manifests.py `RENDERERS`): `service`, or a shape a
    kind's handler declares in `workload_renderers` (the model kind's `model-server`, with its model
    URI or alias in `options`). `image` defaults to
    `<registry>/<deliverable>:<version>`, an immutable tag, so promotion ships the same image.
    """

    deliverable: str
    kind: str
    version: str
    team: str
    port: int
    health_path: str
    command: list[str]
    profile_name: str
    profile: ComputeProfile
    env: Mapping[str, str] = field(default_factory=dict)
    # Variables read from Kubernetes Secrets: name -> (secret, key). Secrets never enter a manifest.
    secret_env: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    env_from_secrets: tuple[str, ...] = ()
    # Secrets the workload reads that the platform owns (a model token): name -> {key: value}. A
    # Kubernetes target creates them in the workload's namespace before the rollout; they are never
    # rendered into a manifest, so a GitOps target leaves them to the operator (External Secrets).
    secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False)
    # Egress the workload needs beyond DNS in a default-deny namespace: (namespace or None for
    # anywhere, TCP port). Callers reach it from its environment's namespaces (ingress policy).
    egress: tuple[tuple[str | None, int], ...] = ()
    image: str | None = None
    startup_timeout_s: float = 60.0
    min_replicas: int = 2
    max_replicas: int = 4
    cpu_utilization: int = 70
    options: Mapping[str, Any] = field(default_factory=dict)


class DeployTarget(Protocol):
    environment: str

    def lock(self, deliverable: str, holder: str, log: Callable[[str], None] | None = None) -> Any:
        """A context manager held by a whole deploy step: one deploy per (deliverable, environment)."""
        ...

    def deploy(self, launch: ProcessLaunch) -> dict[str, Any]: ...

    def current(self, deliverable: str) -> dict[str, Any] | None: ...

    def workspace(self, deliverable: str, version: str) -> Path: ...


def free_port() -> int:
    """A port nobody listens on now; the OS picks it, so two instances never collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def probe(url: str, timeout_s: float = 2.0) -> tuple[bool, str]:
    """GET `url`: (True, body excerpt) on HTTP 200, else (False, why)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = response.read(2048).decode(errors="replace")
            return response.status == 200, f"HTTP {response.status}: {body[:200]}"
    except urllib.error.HTTPError as exc:  # the body says why (a 503's reason), so it goes with the code
        body = exc.read(2048).decode(errors="replace").strip()
        return False, f"HTTP {exc.code} from {url}" + (f": {body[:200]}" if body else "")
    except (urllib.error.URLError, OSError) as exc:
        return False, f"no answer from {url}: {getattr(exc, 'reason', exc)}"
