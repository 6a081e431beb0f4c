"""Kubernetes execution mode: one k8s_job_executor, step pods sized by compute profile.

The step Jobs are rendered by dagster-k8s's own step handler (tests/k8s_render.py), exactly as a
run would submit them, then validated against the Kubernetes schema and the "restricted" Pod
Security profile. No cluster is needed for that; none exists here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from platform_assets.catalog import load_catalog
from platform_assets.code_location import build_definitions
from platform_assets.compute import COMPUTE_TAG, GPU_TAG, K8S_CONFIG_TAG, step_compute
from platform_assets.settings import PROJECT_ROOT, SettingsError, load_settings
from tests.conftest import copy_deliverable
from tests.k8s_render import CODE_IMAGE, FAKE_KUBECONFIG, k8s_launcher_instance_config, render_step_job
from tests.k8s_schema import assert_valid_and_restricted

PRODUCTION_CONFIG = PROJECT_ROOT / "deploy" / "platform.kubernetes.yaml"
# The demo model trains on gpu-1; its build is the GPU training step.
CPU_BUILD, GPU_BUILD = "recommendations_api__build", "churn_model__build"


@pytest.fixture
def k8s_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    copy_deliverable("recommendations-api", catalog)
    copy_deliverable("churn-model", catalog, standalone=True)
    monkeypatch.setenv("PLATFORM_CATALOG_DIR", str(catalog))
    monkeypatch.setenv("PLATFORM_CONFIG", str(PRODUCTION_CONFIG))
    monkeypatch.setenv("PLATFORM_TEAMS_FILE", str(PROJECT_ROOT / "teams.yaml"))  # the image copies it beside
    monkeypatch.setenv("PLATFORM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PLATFORM_PG_PASSWORD", "from-the-platform-warehouse-secret")  # the model reads the warehouse
    return catalog


@pytest.fixture
def k8s_instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(FAKE_KUBECONFIG)
    with dg.instance_for_test(overrides=k8s_launcher_instance_config(kubeconfig)) as instance:
        yield instance


@pytest.fixture
def k8s_defs(k8s_catalog: Path) -> dg.Definitions:
    return build_definitions(load_settings())


def _op_tags(defs: dg.Definitions, key: str) -> dict[str, str]:
    return dict(defs.resolve_assets_def(dg.AssetKey.from_user_string(key)).op.tags)


def test_kubernetes_mode_has_one_k8s_executor(k8s_defs: dg.Definitions) -> None:
    executor = k8s_defs.resolve_implicit_global_asset_job_def().executor_def
    assert executor.name == "k8s"


def test_cpu_step_job_is_sized_restricted_and_valid(k8s_defs: dg.Definitions, k8s_instance) -> None:
    job, namespace = render_step_job(k8s_defs, CPU_BUILD, k8s_instance)

    assert namespace == "dagster"
    assert_valid_and_restricted(job)
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == CODE_IMAGE
    assert container["resources"] == {"requests": {"cpu": "250m", "memory": "512Mi"},
                                      "limits": {"cpu": "1", "memory": "1Gi"}}
    assert "nvidia.com/gpu" not in json.dumps(job)
    assert "nodeSelector" not in pod and "tolerations" not in pod and "priorityClassName" not in pod
    assert pod["serviceAccountName"] == "dagster-steps"
    assert {"secretRef": {"name": "platform-aws"}} in container["envFrom"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PLATFORM_EXECUTION_MODE"] == "kubernetes" and env["DAGSTER_RUN_STEP_KEY"] == CPU_BUILD
    assert job["spec"]["template"]["metadata"]["labels"]["platform.delivery/compute"] == "cpu-small"


def test_gpu_training_step_job_gets_gpu_node_and_toleration(k8s_defs: dg.Definitions, k8s_instance) -> None:
    job, _ = render_step_job(k8s_defs, GPU_BUILD, k8s_instance)

    assert_valid_and_restricted(job)
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["resources"]["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}
    assert container["resources"]["requests"] == {"cpu": "4", "memory": "16Gi"}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["priorityClassName"] == "platform-gpu"
    annotations = job["spec"]["template"]["metadata"]["annotations"]
    assert annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"


@pytest.mark.parametrize("compute", ["gpu-1", None])
def test_a_batch_jobs_scheduled_run_steps_onto_its_compute_profile(k8s_catalog: Path, k8s_instance,
                                                                   compute: str | None) -> None:
    """Dagster's schedule with the k8s executor: the run's one step (the `scheduled_run` check) is a
    pod on the job's profile, a GPU node when the spec asks for one."""
    spec_file = copy_deliverable("churn-scoring", k8s_catalog, standalone=True) / "deliverable.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["compute"] = compute
    spec_file.write_text(yaml.safe_dump(spec))
    defs = build_definitions(load_settings())
    job, _ = render_step_job(defs, "run_churn_scoring_prod_check", k8s_instance, job_name="run_churn_scoring_prod")

    assert_valid_and_restricted(job)
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["serviceAccountName"] == "dagster-steps", "it launches a sandbox pod; it deploys nothing"
    if compute == "gpu-1":
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    else:
        assert "nvidia.com/gpu" not in json.dumps(job)
        assert job["spec"]["template"]["metadata"]["labels"]["platform.delivery/compute"] == "cpu-small"


def test_evaluate_and_deploy_of_a_gpu_deliverable_run_on_cpu(k8s_defs: dg.Definitions, k8s_instance) -> None:
    for step in ("churn_model__evaluate", "churn_model__staging"):
        job, _ = render_step_job(k8s_defs, step, k8s_instance)
        assert_valid_and_restricted(job)
        assert "nvidia.com/gpu" not in json.dumps(job), step
        assert "tolerations" not in job["spec"]["template"]["spec"], step


def test_only_deploy_steps_hold_the_deployer_service_account(k8s_defs: dg.Definitions, k8s_instance) -> None:
    """Build and evaluate steps may only launch sandbox pods; deploy steps alone may apply workloads
    (the bindings are checked in test_deploy_manifests.py)."""
    k8s = load_settings().execution.kubernetes
    expected = {CPU_BUILD: k8s.service_account_name, GPU_BUILD: k8s.service_account_name,
                "churn_model__evaluate": k8s.service_account_name,
                "churn_model__staging": k8s.deployer_service_account_name,
                "churn_model__prod": k8s.deployer_service_account_name}
    assert k8s.service_account_name != k8s.deployer_service_account_name
    for step, account in expected.items():
        job, _ = render_step_job(k8s_defs, step, k8s_instance)
        assert_valid_and_restricted(job)
        pod = job["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == account, step
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["PLATFORM_IDENTITY_MODE"] == load_settings().identity_mode, "steps see the run's identity mode"


def test_only_the_gpu_build_is_tagged_and_pooled_for_gpu(k8s_defs: dg.Definitions, k8s_catalog: Path) -> None:
    settings = load_settings()
    gpu_build = k8s_defs.resolve_assets_def(dg.AssetKey.from_user_string("churn-model/build"))
    assert gpu_build.op.tags[GPU_TAG] == "true" and gpu_build.op.tags[COMPUTE_TAG] == "gpu-1"
    assert gpu_build.op.pool == "gpu"
    for key in ("churn-model/evaluate", "churn-model/staging", "churn-model/prod", "recommendations-api/build"):
        tags = _op_tags(k8s_defs, key)
        assert GPU_TAG not in tags and tags[COMPUTE_TAG] == "cpu-small", key
    [spec] = [d.spec for d in load_catalog(k8s_catalog, settings) if d.name == "churn-model"]
    assert [step_compute(spec, stage, settings) for stage in ("build", "evaluate", "deploy")] == \
        ["gpu-1", "cpu-small", "cpu-small"]


def test_tag_config_is_what_dagster_k8s_parses(k8s_defs: dg.Definitions) -> None:
    """The tag is plain data built from platform.yaml, checked by dagster-k8s's own parser."""
    from dagster_k8s.job import get_user_defined_k8s_config

    config = get_user_defined_k8s_config(_op_tags(k8s_defs, "churn-model/build"))
    assert config.container_config["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert config.pod_spec_config["security_context"]["run_as_non_root"] is True


def test_local_mode_keeps_multiprocess_and_emits_the_same_tags(k8s_catalog: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATFORM_EXECUTION_MODE", "local")
    defs = build_definitions(load_settings())
    assert defs.resolve_implicit_global_asset_job_def().executor_def.name == "multiprocess"
    assert json.loads(_op_tags(defs, "churn-model/build")[K8S_CONFIG_TAG])["pod_spec_config"]["nodeSelector"] == {
        "nvidia.com/gpu.present": "true"}


def test_kubernetes_mode_from_environment_variable_loads_in_a_fresh_process(k8s_catalog: Path) -> None:
    probe = ("import sys; from platform_assets.definitions import defs; "
             "print(defs.resolve_implicit_global_asset_job_def().executor_def.name, 'dagster_k8s' in sys.modules)")
    env = {**os.environ, "PLATFORM_EXECUTION_MODE": "kubernetes",
           "PLATFORM_CONFIG": str(PROJECT_ROOT / "platform.yaml")}
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.split() == ["k8s", "True"]


@pytest.mark.parametrize(("edit", "message"), [
    ({"limits": {"cpu": "8", "memory": "lots"}}, "limits.memory: 'lots' is not a Kubernetes quantity"),
    ({"requests": {"cpu": "4"}, "limits": {"cpu": "2"}}, "requests.cpu (4) is above limits.cpu (2)"),
    ({"requests": {"nvidia.com/gpu": "2"}, "limits": {"nvidia.com/gpu": "1"}}, "requests.nvidia.com/gpu (2) is above"),
])
def test_bad_compute_profile_names_file_field_and_fix(tmp_path: Path, edit: dict, message: str) -> None:
    raw = yaml.safe_load(PRODUCTION_CONFIG.read_text())
    raw["compute_profiles"]["gpu-1"] = edit
    config = tmp_path / "platform.yaml"
    config.write_text(yaml.safe_dump(raw))
    with pytest.raises(SettingsError) as error:
        load_settings(config)
    assert str(config) in str(error.value) and "compute_profiles.gpu-1" in str(error.value)
    assert message in str(error.value)


def test_on_kubernetes_each_deploy_step_has_the_pool_of_its_environment(k8s_defs: dg.Definitions) -> None:
    """Deploy steps run in separate pods there: the instance's pool (one slot per pool, the
    production dagster.yaml's `default_limit: 1`) is what keeps two deploys of one environment apart."""
    import yaml

    pools = {key: k8s_defs.resolve_assets_def(dg.AssetKey.from_user_string(key)).op.pool
             for key in ("recommendations-api/staging", "recommendations-api/prod", "churn-model/prod",
                         "churn-model/build")}
    instance_config = yaml.safe_load((PROJECT_ROOT / "deploy" / "dagster.yaml").read_text())

    assert pools == {"recommendations-api/staging": "deploy/recommendations-api/staging",
                     "recommendations-api/prod": "deploy/recommendations-api/prod",
                     "churn-model/prod": "deploy/churn-model/prod", "churn-model/build": "gpu"}
    assert instance_config["concurrency"]["pools"]["default_limit"] == 1
