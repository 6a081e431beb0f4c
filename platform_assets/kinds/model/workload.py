"""The model kind's workload shape on Kubernetes: a model server (the handler's `workload_renderers`).

Built on the shared blocks of resources/k8s_manifests.py, as any kind's own shape is.
"""

from __future__ import annotations

from resources.deploy_target import Workload
from resources.k8s_manifests import (
    Manifest,
    RenderContext,
    container,
    deployment,
    egress_policy,
    ingress_policy,
    pod_spec,
    service,
)

MODEL_URI_ANNOTATION = "platform.delivery/model-uri"
MODEL_SERVER = "model-server"  # the workload kind


def render_model_server(workload: Workload, ctx: RenderContext) -> list[Manifest]:
    """A model server: Deployment with a fixed replica count (GPU pods do not autoscale on CPU),
    Service and ingress NetworkPolicy. The server loads the alias in `options["model_uri"]` and
    refuses to start if it names another version than the pod's, which the template carries, so
    each new version is a rollout."""
    server = deployment(workload, ctx, pod_spec(workload, ctx, container(workload, ctx)),
                        replicas=workload.min_replicas)
    server["spec"]["template"]["metadata"]["annotations"][MODEL_URI_ANNOTATION] = str(workload.options["model_uri"])
    return [server, service(workload, ctx), ingress_policy(workload, ctx), *egress_policy(workload, ctx)]
