"""Which compute profile a step runs on, and the Kubernetes pod config that profile means.

The config is plain data (no kubernetes import): it is the `dagster-k8s/config` op tag that
dagster-k8s's step handler merges into each step's Job. It is emitted in every execution mode,
so the UI shows what a step would get, and built once per profile, not once per asset.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from platform_assets.settings import ComputeProfile, KubernetesExecution, PlatformSettings
from platform_assets.specs import DeliverableSpec

if TYPE_CHECKING:
    from dagster import AssetKey

K8S_CONFIG_TAG = "dagster-k8s/config"
COMPUTE_TAG = "platform/compute"
GPU_TAG = "platform/gpu"
PROFILE_LABEL = "platform.delivery/compute"

# What the Pod Security "restricted" profile asks of every container.
RESTRICTED_CONTAINER: dict[str, Any] = {
    "allow_privilege_escalation": False,
    "run_as_non_root": True,
    "capabilities": {"drop": ["ALL"]},
    "seccomp_profile": {"type": "RuntimeDefault"},
}


def step_compute(spec: DeliverableSpec, stage: str, settings: PlatformSettings) -> str:
    """The profile a stage runs on: the deliverable's own for build (a model's training is its
    build) and for a batch job's scheduled `run`, `default_compute` (a CPU profile) for evaluate
    and deploy."""
    if stage in ("build", "run"):
        return spec.compute or settings.default_compute
    return settings.default_compute


def stage_pool(kind_pool: str | None, profile_pool: str | None, key: AssetKey, stage_name: str,
               settings: PlatformSettings) -> str | None:
    """The concurrency pool of a stage's step. On Kubernetes a deploy step takes the pool of its
    (deliverable, environment): the instance admits one step per pool (deploy/dagster.yaml
    `pools.default_limit: 1`) across every run pod, as the deploy lock does for one machine.
    Otherwise a kind's own pool (duckdb's single writer) is a correctness limit and wins over a
    profile's capacity pool (gpu)."""
    if stage_name == "deploy" and settings.execution_mode == "kubernetes":
        return f"deploy/{key.to_user_string()}"
    return kind_pool or profile_pool


def step_service_account(stage: str, k8s: KubernetesExecution) -> str:
    """Deploy steps alone hold the deployer's rights; build and evaluate steps only launch sandbox pods."""
    return k8s.deployer_service_account_name if stage == "deploy" else k8s.service_account_name


def restricted_pod_security(run_as_user: int) -> dict[str, Any]:
    """Pod-level security context: non-root with a fixed uid (the images' user), default seccomp."""
    return {
        "run_as_non_root": True,
        "run_as_user": run_as_user,
        "run_as_group": run_as_user,
        "fs_group": run_as_user,
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def step_k8s_config(name: str, profile: ComputeProfile, run_as_user: int) -> dict[str, Any]:
    """The raw dagster-k8s config of a step pod on `profile` (dagster-k8s takes snake or camelCase)."""
    pod_spec = {"security_context": restricted_pod_security(run_as_user), **profile.pod_scheduling()}
    metadata: dict[str, Any] = {"labels": {PROFILE_LABEL: name}}
    if profile.is_gpu:
        # A GPU step evicted by the autoscaler loses its training progress.
        metadata["annotations"] = {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
    return {
        "container_config": {"resources": profile.container_resources(),
                             "security_context": dict(RESTRICTED_CONTAINER)},
        "pod_spec_config": pod_spec,
        "pod_template_spec_metadata": metadata,
    }


class ComputeTags:
    """Op tags per (profile, service account), serialised once: 1,000 deliverables share a handful
    of tag values."""

    def __init__(self, settings: PlatformSettings) -> None:
        self._settings = settings
        self._cache: dict[tuple[str, str], dict[str, str]] = {}

    def __call__(self, profile_name: str, stage: str) -> dict[str, str]:
        k8s = self._settings.execution.kubernetes
        account = step_service_account(stage, k8s)
        tags = self._cache.get((profile_name, account))
        if tags is None:
            profile = self._settings.profile(profile_name)
            config = step_k8s_config(profile_name, profile, k8s.run_as_user)
            config["pod_spec_config"]["service_account_name"] = account
            tags = {COMPUTE_TAG: profile_name, K8S_CONFIG_TAG: json.dumps(config, sort_keys=True)}
            if profile.is_gpu:
                tags[GPU_TAG] = "true"
            self._cache[(profile_name, account)] = tags
        return tags
