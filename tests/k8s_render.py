"""Render the Kubernetes Job that dagster-k8s would submit for one step, without a cluster.

This drives dagster-k8s's own `K8sStepHandler.launch_step` (the code path of a real run) with the
batch API replaced by a mock, the way dagster-k8s's unit tests do, and returns the Job body it
would have POSTed. It uses Dagster internals (`dagster._core...`), hence the pinned versions in
pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import dagster as dg
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from dagster._core.execution.api import create_execution_plan
from dagster._core.execution.context.system import PlanData, PlanOrchestrationContext
from dagster._core.execution.context_creation_job import create_context_free_log_manager
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.init import InitExecutorContext
from dagster._core.executor.step_delegating.step_handler.base import StepHandlerContext
from dagster._core.system_config.objects import ResolvedRunConfig
from dagster._core.test_utils import create_run_for_test
from dagster._grpc.types import ExecuteStepArgs

CODE_IMAGE = "registry.example.com/delivery/platform:0123abcd"

FAKE_KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "http://127.0.0.1:9"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


def k8s_launcher_instance_config(kubeconfig: Path) -> dict[str, Any]:
    """A K8sRunLauncher as the Helm chart configures it (the k8s executor requires one)."""
    return {"run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": {
        "instance_config_map": "dagster-instance", "service_account_name": "dagster",
        "dagster_home": "/opt/dagster/dagster_home", "load_incluster_config": False,
        "kubeconfig_file": str(kubeconfig), "job_namespace": "dagster",
    }}}


def render_step_job(defs: dg.Definitions, step_key: str, instance: dg.DagsterInstance,
                    job_name: str | None = None) -> tuple[dict[str, Any], str]:
    """The Job manifest (camelCase, as kubectl shows it) and namespace the step's launch would create,
    for a step of `job_name` (default: the asset graph's)."""
    import kubernetes

    job_def = defs.resolve_job_def(job_name) if job_name else defs.resolve_implicit_global_asset_job_def()
    origin = ReconstructableJob(
        ReconstructableRepository.for_module("platform_assets.definitions", "defs"), job_def.name
    ).get_python_origin()
    # A user code deployment reports its image; step pods default to it.
    origin = origin._replace(repository_origin=origin.repository_origin._replace(container_image=CODE_IMAGE))
    executor_config = ResolvedRunConfig.build(job_def, {}).execution.execution_engine_config
    executor = job_def.executor_def.executor_creation_fn(  # type: ignore[misc]
        InitExecutorContext(job=InMemoryJob(job_def), executor_def=job_def.executor_def,
                            executor_config=executor_config, instance=instance)
    )
    handler = executor._step_handler  # type: ignore[attr-defined]
    batch_api = mock.MagicMock()
    handler._api_client.batch_api = batch_api
    run = create_run_for_test(instance, job_name=job_def.name, job_code_origin=origin)
    plan = create_execution_plan(job_def)
    plan_context = PlanOrchestrationContext(
        plan_data=PlanData(job=InMemoryJob(job_def), dagster_run=run, instance=instance, execution_plan=plan,
                           raise_on_error=True, retry_mode=RetryMode.DISABLED),
        log_manager=create_context_free_log_manager(instance, run),
        executor=executor,
        output_capture=None,
    )
    context = StepHandlerContext(instance=instance, plan_context=plan_context, steps=plan.steps,
                                 execute_step_args=ExecuteStepArgs(origin, run.run_id, [step_key]))
    list(handler.launch_step(context))
    call = batch_api.create_namespaced_job.call_args
    body = kubernetes.client.ApiClient().sanitize_for_serialization(call.kwargs["body"])
    return body, call.kwargs["namespace"]
