"""Which resource serves each role, per environment, from platform.yaml."""

from __future__ import annotations

from typing import Any

import dagster as dg

from platform_assets.records import target_resource_key
from platform_assets.sandbox import LocalSandbox
from platform_assets.settings import Environment, PlatformSettings
from resources.artifact_store import ArtifactStore, LocalArtifactStore
from resources.gitops_target import GitOpsTarget
from resources.k8s_target import KubernetesTarget
from resources.local_process import LocalProcessTarget
from resources.mlflow_registry import MlflowRegistry
from resources.report_store import LocalReportStore, ReportStore
from resources.s3_artifact_store import S3ArtifactStore
from resources.s3_report_store import S3ReportStore
from resources.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse


def warehouse_resource(settings: PlatformSettings) -> Warehouse:
    config = settings.warehouse
    if config.type == "postgres":
        return PostgresWarehouse(host=config.host, port=config.port, dbname=config.dbname, user=config.user,
                                 password=dg.EnvVar(config.password_env), sslmode=config.sslmode)
    return DuckDBWarehouse(path=config.path, lock_wait_s=config.lock_wait_s)


def report_store_resource(settings: PlatformSettings) -> ReportStore:
    """Where notebook reports are published: a local folder in the state folder, or S3."""
    config = settings.reports
    if config.type == "s3":
        return S3ReportStore(bucket=config.bucket or "", prefix=config.prefix, endpoint_url=config.endpoint_url,
                             region_name=config.region, public_url=config.public_url)
    return LocalReportStore(root=config.path)


def artifact_store(settings: PlatformSettings) -> ArtifactStore:
    """Local folder by default; S3 (credentials from the AWS environment only) when configured."""
    config = settings.artifacts
    if config.type == "s3":
        return S3ArtifactStore(bucket=config.bucket or "", prefix=config.prefix, endpoint_url=config.endpoint_url,
                               region_name=config.region)
    return LocalArtifactStore(root=config.path)


def deploy_target(settings: PlatformSettings, env: Environment) -> Any:
    """The target named by `environments[].target`: local processes, a cluster, or a GitOps repository."""
    if env.target == "local":
        return LocalProcessTarget(environment=env.name, gateway_port=env.gateway_port,
                                  drain_timeout_s=settings.runtime.drain_timeout_s)
    common = {"environment": env.name, "namespace": env.namespace or "", "registry": env.registry or "",
              "run_as_user": settings.execution.kubernetes.run_as_user}
    if env.target == "kubernetes":
        return KubernetesTarget(**common, rollout_timeout_s=env.rollout_timeout_s)
    return GitOpsTarget(**common, repo_path=env.gitops_repo or "", push=env.gitops_push)


def sandbox_resource(settings: PlatformSettings) -> Any:
    """Where deliverable code runs: a child process here, a pod of its own in kubernetes mode (its
    files travel through the artifact bucket, so that mode needs `artifacts: {type: s3}`)."""
    if settings.execution_mode != "kubernetes":
        return LocalSandbox()
    from resources.k8s_sandbox import KubernetesSandbox

    k8s, artifacts = settings.execution.kubernetes, settings.artifacts
    return KubernetesSandbox(namespace=k8s.sandbox_namespace, service_account=k8s.sandbox_service_account,
                             image=k8s.sandbox_image, image_pull_policy=k8s.image_pull_policy,
                             run_as_user=k8s.run_as_user, start_timeout_s=k8s.sandbox_start_timeout_s,
                             bucket=artifacts.bucket if artifacts.type == "s3" else "", prefix=artifacts.prefix,
                             endpoint_url=artifacts.endpoint_url, region_name=artifacts.region)


def platform_resources(settings: PlatformSettings) -> dict[str, Any]:
    resources: dict[str, Any] = {
        "sandbox": sandbox_resource(settings),
        "artifact_store": artifact_store(settings),
        "warehouse": warehouse_resource(settings),
        "report_store": report_store_resource(settings),
        "mlflow": MlflowRegistry(tracking_uri=settings.mlflow.tracking_uri,
                                 artifact_location=settings.mlflow.artifact_location),
    }
    for env in settings.environments:
        resources[target_resource_key(env.name)] = deploy_target(settings, env)
    return resources
