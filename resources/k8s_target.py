"""Deploy target that applies manifests to a Kubernetes cluster and rolls back failed rollouts.

A deploy server-side applies the rendered manifests, waits for the Deployment's rollout and, if
it fails (progress deadline or timeout), re-applies the manifests of the last good release. That
release is kept in the cluster, in a ConfigMap `<deliverable>-release` beside the workload, so
any step pod can roll back and the record survives the pod. A first deploy that fails is removed.
Secrets the workload reads from the platform (`Workload.secrets`: a model token) are created or
updated in its namespace before the rollout, and never enter the release record.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from resources.deploy_target import DeployFailed, Workload
from resources.k8s_client import Cluster
from resources.k8s_manifests import VERSION_ANNOTATION, Manifest
from resources.manifest_target import ManifestTarget


def release_name(deliverable: str) -> str:
    return f"{deliverable}-release"


def release_record(workload_manifests: list[Manifest], version: str) -> Manifest:
    """The ConfigMap that remembers what the last good rollout applied."""
    deployment = next(m for m in workload_manifests if m["kind"] == "Deployment")
    meta = deployment["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": release_name(meta["name"]), "namespace": meta["namespace"],
                     "labels": {**meta["labels"], "app.kubernetes.io/component": "release-record"}},
        "data": {"version": version, "manifests": json.dumps(workload_manifests, sort_keys=True)},
    }


def secret_manifest(namespace: str, name: str, data: dict[str, str]) -> Manifest:
    """An Opaque Secret the platform owns (applied, never rendered into files or release records)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/managed-by": "delivery-platform",
                                "app.kubernetes.io/part-of": "delivery-platform"}},
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }


def _identity(manifest: Manifest) -> tuple[str, str]:
    return manifest["kind"], manifest["metadata"]["name"]


class KubernetesTarget(ManifestTarget):
    """Applies to the cluster of `kubeconfig_file` (or the in-cluster service account)."""

    kubeconfig_file: str | None = None
    kube_context: str | None = None
    rollout_timeout_s: float = 600.0
    poll_interval_s: float = 2.0

    def api_client(self) -> Any:
        from kubernetes import client, config

        kubeconfig = self.kubeconfig_file or os.environ.get("KUBECONFIG")
        if kubeconfig or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            return config.new_client_from_config(config_file=kubeconfig, context=self.kube_context,
                                                 persist_config=False)
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)

    def ship(self, workload: Workload, manifests: list[Manifest]) -> dict[str, Any]:
        namespace, name = self.namespace_for(workload), workload.deliverable
        with self.api_client() as api:
            cluster = Cluster(api)
            record = cluster.get("v1", "ConfigMap", namespace, release_name(name))
            previous = record["data"] if record else None
            for secret, data in workload.secrets.items():
                cluster.apply(secret_manifest(namespace, secret, dict(data)))
            for manifest in manifests:
                cluster.apply(manifest)
            done, detail = cluster.wait_rollout(namespace, name, self.rollout_timeout_s, self.poll_interval_s)
            if done:
                cluster.apply(release_record(manifests, workload.version))
                return {"previous_version": previous["version"] if previous else None, "rollout": detail,
                        "url": f"http://{name}.{namespace}.svc.cluster.local"}
            outcome = self._roll_back(cluster, manifests, previous)
        raise DeployFailed(
            f"{name} {workload.version} did not roll out in {namespace}: {detail}; {outcome}",
            {"attempted_version": workload.version, "namespace": namespace, "rollout": detail,
             "rolled_back_to": previous["version"] if previous else None},
        )

    def _roll_back(self, cluster: Cluster, failed: list[Manifest], previous: dict[str, str] | None) -> str:
        """Re-apply the last good release (or remove a first deploy); say what was done."""
        if previous is None:
            for manifest in failed:
                cluster.delete(manifest)
            return "nothing ran before, so the new objects were removed"
        kept: list[Manifest] = json.loads(previous["manifests"])
        for manifest in kept:
            cluster.apply(manifest)
        for manifest in failed:
            if _identity(manifest) not in {_identity(k) for k in kept}:
                cluster.delete(manifest)
        deployment = next(m for m in kept if m["kind"] == "Deployment")["metadata"]
        done, detail = cluster.wait_rollout(deployment["namespace"], deployment["name"],
                                            self.rollout_timeout_s, self.poll_interval_s)
        state = "and it is available again" if done else f"but its rollout did not complete either: {detail}"
        return f"rolled back to {previous['version']} {state}"

    def verify(self, deployment: dict[str, Any]) -> tuple[bool, str]:
        """Healthy: the Deployment runs this version and its replicas pass the readiness probe."""
        name = deployment["workload"]
        with self.api_client() as api:
            found = Cluster(api).get("apps/v1", "Deployment", deployment["namespace"], name)
        if found is None:
            return False, f"deployment {name} is gone from {deployment['namespace']}"
        running = found["metadata"].get("annotations", {}).get(VERSION_ANNOTATION)
        available = (found.get("status") or {}).get("availableReplicas", 0)
        if running != deployment["version"]:
            return False, f"{name} runs {running}, not {deployment['version']}"
        return available > 0, f"{available} replica(s) of {running} ready (readiness probe on the health path)"
