"""The one executor of `kubernetes` mode: dagster-k8s's `k8s_job_executor`, one pod per step.

Imported only by `build_definitions` in kubernetes mode: dagster_k8s pulls in the kubernetes
client, which local mode never needs. Each step's sizing comes from its op tag (compute.py);
the executor's `step_k8s_config` is the default profile, so a step without its own tag (the dbt
models' op) is still sized and runs under the restricted security context.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from platform_assets.compute import GPU_TAG, step_k8s_config
from platform_assets.settings import IDENTITY_MODE_ENV, MODE_ENV, PlatformSettings


def executor_config(settings: PlatformSettings) -> dict[str, Any]:
    """The `k8s_job_executor` config from platform.yaml's `execution.kubernetes` (plain data)."""
    k8s = settings.execution.kubernetes
    config: dict[str, Any] = {
        "job_namespace": k8s.job_namespace,
        "image_pull_policy": k8s.image_pull_policy,
        "service_account_name": k8s.service_account_name,
        "env_secrets": list(k8s.env_secrets),
        "env_config_maps": list(k8s.env_config_maps),
        # Step pods load the code location again: they must see the same modes.
        "env_vars": [f"{MODE_ENV}=kubernetes", f"{IDENTITY_MODE_ENV}={settings.identity_mode}"],
        "labels": {"app.kubernetes.io/part-of": "delivery-platform"},
        "max_concurrent": k8s.max_concurrent,
        "tag_concurrency_limits": [{"key": GPU_TAG, "value": "true", "limit": k8s.gpu_steps_per_run}],
        "step_k8s_config": step_k8s_config(
            settings.default_compute, settings.profile(settings.default_compute), k8s.run_as_user
        ),
    }
    if k8s.job_image_env:
        config["job_image"] = {"env": k8s.job_image_env}
    return config


def kubernetes_executor(settings: PlatformSettings) -> dg.ExecutorDefinition:
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor.configured(executor_config(settings), name="k8s")
