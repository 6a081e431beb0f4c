"""Kubernetes manifests for workloads: one render function per workload kind, shared building blocks.

Plain dicts (camelCase, as the API server takes them), no kubernetes import: the Kubernetes
target applies them, the GitOps target writes them, tests validate them against the schema.
Every pod meets the Pod Security "restricted" profile, has requests and limits from its compute
profile, probes on its health path and the annotations Prometheus scrapes it by. A kind with a
shape of its own declares its render function in its handler's `workload_renderers` (the model
kind's model server: kinds/model/workload.py), built on `deployment`, `pod_spec`, `container`
and `service`; registering the kind registers it here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from platform_assets.serving_metrics import METRICS_PATH
from resources.deploy_target import Workload

Manifest = dict[str, Any]
VERSION_ANNOTATION = "platform.delivery/version"
PLATFORM_NAMESPACE = "dagster"  # where the platform's steps run; they verify deployments over HTTP
MONITORING_NAMESPACE = "monitoring"  # where Prometheus runs; it scrapes every pod that serves


@dataclass(frozen=True)
class RenderContext:
    """What the target decides: where the workload goes and which image runs it."""

    environment: str
    namespace: str
    image: str
    run_as_user: int = 10001


def selector(workload: Workload) -> dict[str, str]:
    """Labels that identify a workload's pods across versions (a Deployment selector is immutable)."""
    return {"app.kubernetes.io/name": workload.deliverable, "app.kubernetes.io/instance": workload.deliverable}


def labels(workload: Workload, ctx: RenderContext) -> dict[str, str]:
    return {
        **selector(workload),
        "app.kubernetes.io/version": workload.version[:63],
        "app.kubernetes.io/component": workload.kind,
        "app.kubernetes.io/part-of": "delivery-platform",
        "app.kubernetes.io/managed-by": "delivery-platform",
        "platform.delivery/team": workload.team,
        "platform.delivery/environment": ctx.environment,
    }


def metadata(workload: Workload, ctx: RenderContext, name: str | None = None) -> dict[str, Any]:
    return {
        "name": name or workload.deliverable,
        "namespace": ctx.namespace,
        "labels": labels(workload, ctx),
        "annotations": {VERSION_ANNOTATION: workload.version},
    }


def restricted_container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def http_probe(path: str, period_s: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period_s, "timeoutSeconds": 2,
            "failureThreshold": failures}


def container(workload: Workload, ctx: RenderContext) -> dict[str, Any]:
    """The workload's container: resources from its profile, probes on its health path (the startup
    probe allows `startup_timeout_s`)."""
    env = {**workload.env, "PLATFORM_VERSION": workload.version, "PLATFORM_ENVIRONMENT": ctx.environment}
    return {
        "name": workload.kind,
        "image": ctx.image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(workload.command),
        "ports": [{"name": "http", "containerPort": workload.port, "protocol": "TCP"}],
        "env": [{"name": key, "value": value} for key, value in sorted(env.items())]
        + [{"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": item}}}
           for key, (secret, item) in sorted(workload.secret_env.items())],
        **({"envFrom": [{"secretRef": {"name": name}} for name in workload.env_from_secrets]}
           if workload.env_from_secrets else {}),
        "resources": workload.profile.container_resources(),
        "startupProbe": http_probe(workload.health_path, 2, max(1, int(workload.startup_timeout_s) // 2)),
        "readinessProbe": http_probe(workload.health_path, 5, 3),
        "livenessProbe": http_probe(workload.health_path, 10, 3),
        "securityContext": restricted_container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def pod_spec(workload: Workload, ctx: RenderContext, main: dict[str, Any]) -> dict[str, Any]:
    """Pod-level settings: restricted security, and scheduling from the profile (GPU nodes)."""
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": ctx.run_as_user,
            "runAsGroup": ctx.run_as_user,
            "fsGroup": ctx.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [main],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        **workload.profile.pod_scheduling(),
    }


def scrape_annotations(workload: Workload) -> dict[str, str]:
    """Where Prometheus scrapes a pod: the serving wrapper's `/-/metrics` on the workload's port
    (the `prometheus.io/*` convention of Prometheus' kubernetes_sd `pod` role relabelling)."""
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(workload.port),
            "prometheus.io/path": METRICS_PATH}


def deployment(workload: Workload, ctx: RenderContext, spec: dict[str, Any],
               replicas: int | None = None) -> Manifest:
    """A Deployment that keeps the old version serving until the new one is ready (maxUnavailable 0),
    its pods annotated for Prometheus.

    `replicas` is left out when an HPA owns it, so an apply never resets the autoscaler's choice.
    """
    template_labels = labels(workload, ctx)
    body: dict[str, Any] = {
        "revisionHistoryLimit": 5,
        "progressDeadlineSeconds": 300,
        "selector": {"matchLabels": selector(workload)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {"metadata": {"labels": template_labels,
                                  "annotations": {VERSION_ANNOTATION: workload.version,
                                                  **scrape_annotations(workload)}},
                     "spec": spec},
    }
    if replicas is not None:
        body["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata(workload, ctx), "spec": body}


def service(workload: Workload, ctx: RenderContext) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(workload, ctx),
        "spec": {"type": "ClusterIP", "selector": selector(workload),
                 "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]},
    }


def autoscaler(workload: Workload, ctx: RenderContext) -> Manifest:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(workload, ctx),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload.deliverable},
            "minReplicas": workload.min_replicas,
            "maxReplicas": max(workload.max_replicas, workload.min_replicas),
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": workload.cpu_utilization}}}],
        },
    }


def _namespaces(names: list[str]) -> dict[str, Any]:
    return {"namespaceSelector": {"matchExpressions": [{
        "key": "kubernetes.io/metadata.name", "operator": "In", "values": sorted(set(names))}]}}


def ingress_policy(workload: Workload, ctx: RenderContext) -> Manifest:
    """Opens the workload's port inside a default-deny namespace: to its namespace, the platform,
    Prometheus, and every namespace of the same environment (a staging service calls the staging
    model)."""
    sources = [_namespaces([ctx.namespace, PLATFORM_NAMESPACE, MONITORING_NAMESPACE]),
               {"namespaceSelector": {"matchLabels": {"platform.delivery/environment": ctx.environment}}}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(workload, ctx, f"{workload.deliverable}-ingress"),
        "spec": {
            "podSelector": {"matchLabels": selector(workload)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": sources, "ports": [{"protocol": "TCP", "port": workload.port}]}],
        },
    }


def egress_policy(workload: Workload, ctx: RenderContext) -> list[Manifest]:
    """Opens what `workload.egress` names (upstream endpoints, the tracking server, object storage)."""
    if not workload.egress:
        return []
    rules = [{**({"to": [_namespaces([namespace])]} if namespace else {}),
              "ports": [{"protocol": "TCP", "port": port}]} for namespace, port in sorted(
                  set(workload.egress), key=lambda rule: (rule[0] or "", rule[1]))]
    return [{
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(workload, ctx, f"{workload.deliverable}-egress"),
        "spec": {"podSelector": {"matchLabels": selector(workload)}, "policyTypes": ["Egress"], "egress": rules},
    }]


def render_service(workload: Workload, ctx: RenderContext) -> list[Manifest]:
    """A web service: Deployment, Service, HorizontalPodAutoscaler, its ingress NetworkPolicy and,
    when it calls anything, its egress NetworkPolicy."""
    spec = pod_spec(workload, ctx, container(workload, ctx))
    return [deployment(workload, ctx, spec), service(workload, ctx), autoscaler(workload, ctx),
            ingress_policy(workload, ctx), *egress_policy(workload, ctx)]


Renderer = Callable[[Workload, RenderContext], list[Manifest]]
# The web-service shape every kind may use; a kind with a shape of its own declares it in its
# handler's `workload_renderers`, registered with the kind (platform_assets/kinds/registry.py).
RENDERERS: dict[str, Renderer] = {"service": render_service}


def register_renderer(kind: str, renderer: Renderer) -> None:
    known = RENDERERS.setdefault(kind, renderer)
    if known is not renderer:
        raise ValueError(f"workload kind '{kind}' is rendered by {known.__module__}.{known.__name__} already")


def render(workload: Workload, ctx: RenderContext) -> list[Manifest]:
    renderer = RENDERERS.get(workload.kind)
    if renderer is None:
        raise ValueError(f"no Kubernetes renderer for workload kind '{workload.kind}' "
                         f"(known: {', '.join(sorted(RENDERERS))}); its kind's handler declares one in "
                         "`workload_renderers` (registered into RENDERERS)")
    return renderer(workload, ctx)
