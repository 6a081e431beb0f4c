"""The few Kubernetes API calls the Kubernetes target makes, through the official python client.

Server-side apply (PATCH `application/apply-patch+yaml` with a field manager) works for any kind,
so one generic `apply` serves every manifest a renderer produces. Imported only inside deploy
steps: the kubernetes client is never loaded with the definitions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from resources.k8s_manifests import Manifest

FIELD_MANAGER = "delivery-platform"
_OBJECT = {200: "object", 201: "object"}


def plural(kind: str) -> str:
    lower = kind.lower()
    return lower[:-1] + "ies" if lower.endswith("y") else lower + "s"


def resource_path(api_version: str, kind: str, namespace: str, name: str) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    return f"{base}/namespaces/{namespace}/{plural(kind)}/{name}"


def manifest_path(manifest: Manifest) -> str:
    meta = manifest["metadata"]
    return resource_path(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])


@dataclass
class Cluster:
    """A `kubernetes.client.ApiClient` with the calls the target needs."""

    api: Any

    def _call(self, path: str, method: str, **kwargs: Any) -> Any:
        return self.api.call_api(path, method, response_types_map=_OBJECT, auth_settings=["BearerToken"],
                                 _return_http_data_only=True, **kwargs)

    def apply(self, manifest: Manifest) -> dict[str, Any]:
        """Server-side apply: the platform owns the fields it sets; force takes them back."""
        return self._call(manifest_path(manifest), "PATCH", body=manifest,
                          query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                          header_params={"Content-Type": "application/apply-patch+yaml",
                                         "Accept": "application/json"})

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._call(resource_path(api_version, kind, namespace, name), "GET",
                              header_params={"Accept": "application/json"})
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def delete(self, manifest: Manifest) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self._call(manifest_path(manifest), "DELETE", header_params={"Accept": "application/json"})
        except ApiException as exc:
            if exc.status != 404:
                raise

    def wait_rollout(self, namespace: str, name: str, timeout_s: float, poll_s: float) -> tuple[bool, str]:
        """Like `kubectl rollout status`: (True, detail) once complete; False on a passed progress
        deadline or when `timeout_s` runs out first."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.get("apps/v1", "Deployment", namespace, name)
            state, detail = rollout_state(found) if found else ("progressing", "deployment not found yet")
            if state != "progressing":
                return state == "complete", detail
            if time.monotonic() >= deadline:
                return False, f"not rolled out within {timeout_s:g}s: {detail}"
            time.sleep(poll_s)


def rollout_state(deployment: dict[str, Any]) -> tuple[str, str]:
    """`complete`, `failed` or `progressing`, with why, from a Deployment's spec and status."""
    meta, spec, status = deployment["metadata"], deployment.get("spec", {}), deployment.get("status") or {}
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return "progressing", "waiting for the deployment controller to see the new spec"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return "failed", f"progress deadline exceeded: {condition.get('message', '')}".strip()
    wanted = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    total = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < wanted:
        return "progressing", f"{updated} of {wanted} new replicas updated"
    if total > updated:
        return "progressing", f"{total - updated} old replicas pending termination"
    if available < updated:
        return "progressing", f"{available} of {updated} updated replicas available"
    return "complete", f"{available} of {wanted} replicas available"
