"""Readiness of the platform's Deployments, read from the Kubernetes API for the runtime sensor.

One list call per namespace (the platform's label selects its Deployments) through the kubernetes
client's DynamicClient, with the discovery it needs cached in the state folder. The Deployment
controller restarts pods itself; the platform only reads whether replicas are available.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from platform_assets.settings import state_dir
from resources.k8s_client import rollout_state
from resources.k8s_manifests import VERSION_ANNOTATION

MANAGED = "app.kubernetes.io/managed-by=delivery-platform"


@dataclass(frozen=True)
class Readiness:
    version: str
    generation: int
    desired: int
    available: int
    rollout: str  # complete, progressing or failed (resources/k8s_client.rollout_state)
    detail: str


def platform_deployments(api_client: Any, namespaces: Iterable[str]) -> dict[tuple[str, str], Readiness]:
    """(namespace, name) -> readiness of every Deployment the platform manages in `namespaces`."""
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.exceptions import NotFoundError

    host = api_client.configuration.host.encode()
    cache = state_dir() / "cache" / f"k8s-discovery-{hashlib.sha256(host).hexdigest()[:16]}.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    deployments = DynamicClient(api_client, cache_file=str(cache)).resources.get(api_version="apps/v1",
                                                                                 kind="Deployment")
    found = {}
    for namespace in sorted(set(namespaces)):
        try:
            listing = deployments.get(namespace=namespace, label_selector=MANAGED, serializer=_as_dict)
        except NotFoundError:
            continue  # no such namespace yet: nothing deployed there
        for item in listing.get("items") or []:
            found[(namespace, item["metadata"]["name"])] = readiness(item)
    return found


def _as_dict(_client: Any, data: dict[str, Any]) -> dict[str, Any]:
    """The response as parsed JSON (DynamicClient's ResourceInstance wrapping costs more than the call)."""
    return data


def readiness(deployment: dict[str, Any]) -> Readiness:
    meta, status = deployment["metadata"], deployment.get("status") or {}
    desired = int((deployment.get("spec") or {}).get("replicas", 1))
    available = int(status.get("availableReplicas", 0))
    rollout, why = rollout_state(deployment)
    detail = f"{available} of {desired} replica(s) available" + ("" if rollout == "complete" else f"; {why}")
    return Readiness(version=str((meta.get("annotations") or {}).get(VERSION_ANNOTATION, "")),
                     generation=int(meta.get("generation", 0)), desired=desired, available=available,
                     rollout=rollout, detail=detail)
