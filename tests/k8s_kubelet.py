"""The node side of the stand-in API server (tests/k8s_api_server.py): "runs" a pod's one container
as a local subprocess, because no container runtime exists here.

The process gets exactly what a container would: the image's environment (its Dockerfile `ENV`,
given per image) overlaid with the container's `env` and `envFrom` (resolved from the server's
Secrets and ConfigMaps) and the container's `command` + `args`, run in a fresh folder (the pod's
writable working directory). Nothing of the test process's own environment leaks in, so what
the process sees is what the pod would see.
"""

from __future__ import annotations

import base64
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Lookup = Callable[[str, str, str], dict[str, Any] | None]  # (plural, namespace, name) -> object


class ContainerConfigError(Exception):
    """What the kubelet reports as CreateContainerConfigError (e.g. a Secret that does not exist)."""


@dataclass
class LocalKubelet:
    root: Path
    image_env: dict[str, dict[str, str]] = field(default_factory=dict)
    seen_env: dict[str, dict[str, str]] = field(default_factory=dict)  # pod name -> the process's env

    def environment(self, pod: dict[str, Any], lookup: Lookup) -> dict[str, str]:
        namespace = pod["metadata"]["namespace"]
        [container] = pod["spec"]["containers"]
        env = dict(self.image_env.get(container["image"], {}))
        for source in container.get("envFrom") or []:
            env.update(_source_data(source, namespace, lookup))
        for variable in container.get("env") or []:
            env[variable["name"]] = _value(variable, namespace, lookup)
        return env

    def run(self, pod: dict[str, Any], env: dict[str, str], timeout_s: float) -> tuple[int, str]:
        """Run the container's process to its end: (exit code, combined output)."""
        [container] = pod["spec"]["containers"]
        command = [*(container.get("command") or []), *(container.get("args") or [])]
        self.seen_env[pod["metadata"]["name"]] = env
        # The container's filesystem: a fresh folder, its working directory (the pod's emptyDir).
        cwd = tempfile.mkdtemp(prefix=f"{pod['metadata']['name']}-", dir=self.root)
        completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True,
                                   text=True, errors="replace", timeout=timeout_s, stdin=subprocess.DEVNULL)
        return completed.returncode, completed.stdout + completed.stderr

def _source_data(source: dict[str, Any], namespace: str, lookup: Lookup) -> dict[str, str]:
    if "secretRef" in source:
        return _data(lookup("secrets", namespace, source["secretRef"]["name"]), "secret", source["secretRef"]["name"])
    return _data(lookup("configmaps", namespace, source["configMapRef"]["name"]), "configmap",
                 source["configMapRef"]["name"])


def _value(variable: dict[str, Any], namespace: str, lookup: Lookup) -> str:
    if "value" in variable:
        return variable["value"]
    ref = variable["valueFrom"]["secretKeyRef"]
    data = _data(lookup("secrets", namespace, ref["name"]), "secret", ref["name"])
    if ref["key"] not in data:
        raise ContainerConfigError(f'couldn\'t find key {ref["key"]} in Secret {namespace}/{ref["name"]}')
    return data[ref["key"]]


def _data(obj: dict[str, Any] | None, kind: str, name: str) -> dict[str, str]:
    if obj is None:
        raise ContainerConfigError(f'{kind} "{name}" not found')
    if kind == "secret":
        return {key: base64.b64decode(value).decode() for key, value in (obj.get("data") or {}).items()}
    return dict(obj.get("data") or {})
