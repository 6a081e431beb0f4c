"""Everything under deploy/ and everything the deploy targets render, checked without a cluster:
Kubernetes manifests against the schema of a pinned version (tests/k8s_schema.py) and the
"restricted" Pod Security profile; dagster.yaml against Dagster's instance schema; the Helm
values, the Dockerfiles and the production platform.yaml against what the platform relies on."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from platform_assets.handlers.base import Deployed, StageContext
from platform_assets.model_token import model_token
from platform_assets.settings import PROJECT_ROOT, load_settings
from resources.deploy_target import Workload
from resources.k8s_manifests import MODEL_URI_ANNOTATION, RENDERERS, RenderContext, render
from tests.k8s_render import CODE_IMAGE
from tests.k8s_schema import assert_valid_and_restricted, manifests_in, restricted_violations

DEPLOY = PROJECT_ROOT / "deploy"
NOT_MANIFESTS = {DEPLOY / "dagster.yaml", DEPLOY / "dagster.local.yaml", DEPLOY / "platform.kubernetes.yaml",
                 DEPLOY / "helm" / "values.yaml"}
PRODUCTION = DEPLOY / "platform.kubernetes.yaml"


def manifest_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*.yaml") if p not in NOT_MANIFESTS)


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_manifest_under_deploy_is_valid(path: Path) -> None:
    for manifest in manifests_in(path):
        assert_valid_and_restricted(manifest)


def test_base_manifests_cover_namespaces_quotas_priority_and_default_deny() -> None:
    manifests = [m for path in manifest_files() for m in manifests_in(path)]
    kinds = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    settings = load_settings(PRODUCTION)
    for env in settings.environments:
        namespace = env.namespace_for("recs-team")
        assert ("Namespace", namespace) in kinds
        in_namespace = {m["kind"] for m in manifests if m["metadata"].get("namespace") == namespace}
        assert {"ResourceQuota", "LimitRange", "NetworkPolicy", "RoleBinding"} <= in_namespace
    quotas = [m for m in manifests if m["kind"] == "ResourceQuota"]
    assert all("requests.nvidia.com/gpu" in q["spec"]["hard"] for q in quotas)
    assert ("PriorityClass", settings.profile("gpu-1").priority_class) in kinds
    deny = [m for m in manifests if m["kind"] == "NetworkPolicy" and m["metadata"]["name"] == "default-deny"]
    assert deny and all(m["spec"]["podSelector"] == {} and "Ingress" in m["spec"]["policyTypes"] for m in deny)
    namespaces = [m for m in manifests if m["kind"] == "Namespace"]
    assert all(n["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted" for n in namespaces)


def test_kustomizations_list_exactly_their_folder() -> None:
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        listed = yaml.safe_load(kustomization.read_text())["resources"]
        present = {p.name for p in kustomization.parent.glob("*.yaml")} - {"kustomization.yaml"}
        assert sorted(listed) == sorted(present), kustomization


def service_workload(profile: str) -> Workload:
    settings = load_settings(PRODUCTION)
    return Workload(deliverable="recommendations-api", kind="service", version="3f2a9c1b7d4e", team="recs-team",
                    port=8080, health_path="/health", profile_name=profile, profile=settings.profile(profile),
                    command=["python", "-m", "uvicorn", "recommendations_api.app:app"], env={"LOG_LEVEL": "info"})


CTX = RenderContext(environment="staging", namespace="recs-team-staging",
                    image="registry.example.com/delivery/recommendations-api:3f2a9c1b7d4e")


@pytest.mark.parametrize("profile", ["cpu-small", "gpu-1"])
def test_rendered_service_manifests_are_valid_restricted_and_probed(profile: str) -> None:
    manifests = render(service_workload(profile), CTX)

    assert [m["kind"] for m in manifests] == ["Deployment", "Service", "HorizontalPodAutoscaler", "NetworkPolicy"]
    for manifest in manifests:
        assert_valid_and_restricted(manifest)
    deployment = manifests[0]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"].endswith(":3f2a9c1b7d4e"), "the version is the immutable image tag"
    assert {"requests", "limits"} <= set(container["resources"])
    assert all(container[probe]["httpGet"]["path"] == "/health"
               for probe in ("startupProbe", "readinessProbe", "livenessProbe"))
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    gpu = profile.startswith("gpu")
    assert ("nvidia.com/gpu" in container["resources"]["limits"]) is gpu
    assert ("nodeSelector" in pod, "tolerations" in pod, "priorityClassName" in pod) == (gpu, gpu, gpu)


def test_an_unknown_workload_kind_names_the_registry() -> None:
    workload = service_workload("cpu-small")
    with pytest.raises(ValueError, match=r"no Kubernetes renderer for workload kind 'batch'.*RENDERERS"):
        render(Workload(**{**workload.__dict__, "kind": "batch"}), CTX)
    assert "service" in RENDERERS


def test_restricted_checker_catches_what_it_must() -> None:
    bad = {"hostNetwork": True, "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
           "containers": [{"name": "c", "securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}},
                           "ports": [{"containerPort": 80, "hostPort": 80}]}]}
    problems = " | ".join(restricted_violations(bad))
    for expected in ("hostNetwork", "hostPath", "privileged", "allowPrivilegeEscalation", "runAsNonRoot",
                     "seccompProfile", "drop ALL", "SYS_ADMIN", "hostPort"):
        assert expected in problems, expected


def test_production_dagster_yaml_is_a_valid_instance_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from dagster._config import validate_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_k8s import K8sRunLauncher

    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_DB", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD",
                 "DAGSTER_COMPUTE_LOG_BUCKET"):
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("DAGSTER_PG_PORT", "5432")
    (tmp_path / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    config, _ = dagster_instance_config(str(tmp_path))
    assert set(config["storage"]) == {"postgres"}
    assert config["run_monitoring"]["enabled"] is True
    assert config["concurrency"]["runs"]["max_concurrent_runs"] > 0
    for section, klass in (("run_launcher", K8sRunLauncher), ("compute_logs", S3ComputeLogManager)):
        assert validate_config(klass.config_type(), config[section]["config"]).success, section
    raw = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert raw["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}


def test_helm_values_serve_the_code_location_with_k8s_launcher_postgres_and_pools() -> None:
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    settings = load_settings(PRODUCTION)
    [location] = values["dagster-user-deployments"]["deployments"]
    assert location["dagsterApiGrpcArgs"] == ["-m", "platform_assets.definitions"]
    assert {"name": "PLATFORM_EXECUTION_MODE", "value": "kubernetes"} in location["env"]
    assert location["includeConfigInLaunchedRuns"]["enabled"] is True
    secrets = settings.execution.kubernetes.env_secrets
    assert [s["name"] for s in location["envSecrets"]] == secrets
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    assert launcher["config"]["k8sRunLauncher"]["jobNamespace"] == settings.execution.kubernetes.job_namespace
    assert values["postgresql"]["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    assert "postgresqlPassword" not in values["postgresql"], "the password comes from a Kubernetes secret"
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"] is True
    assert values["concurrency"]["pools"]["defaultLimit"] >= 1
    assert "gpu" in (DEPLOY / "helm" / "values.yaml").read_text()
    for component in (values["dagsterWebserver"], values["dagsterDaemon"], location):
        pod = {"securityContext": component["podSecurityContext"],
               "containers": [{"name": "main", "securityContext": component["securityContext"]}]}
        assert restricted_violations(pod) == []


def test_code_location_dockerfile_layers_user_and_secrets() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    install_deps = next(i for i, line in enumerate(lines) if line.startswith("COPY pyproject.toml"))
    copy_code = next(i for i, line in enumerate(lines) if line.startswith("COPY platform_assets"))
    assert install_deps < copy_code, "dependencies are their own layer, before the code"
    users = [line for line in lines if line.startswith("USER ")]
    assert users and re.fullmatch(r"USER [1-9][0-9]*(:[1-9][0-9]*)?", users[-1]), "a numeric non-root user"
    assert str(load_settings(PRODUCTION).execution.kubernetes.run_as_user) in users[-1]
    assert not re.search(r"^(ENV|ARG)\s+\S*(PASSWORD|SECRET|TOKEN|ACCESS_KEY)", text, re.MULTILINE | re.IGNORECASE)
    assert "platform_assets.definitions" in lines[-1]
    assert "COPY deploy/platform.kubernetes.yaml ./platform.yaml" in lines, "the image runs the production config"
    service = (DEPLOY / "service.Dockerfile").read_text()
    assert re.search(r"^USER [1-9][0-9]*", service, re.MULTILINE)


def test_production_platform_yaml_loads() -> None:
    settings = load_settings(PRODUCTION)
    assert settings.execution.mode == "kubernetes" and settings.artifacts.type == "s3"
    assert [e.target for e in settings.environments] == ["kubernetes", "gitops"]


@pytest.mark.parametrize(("environment", "message"), [
    ({"name": "staging", "target": "kubernetes", "registry": "r"}, "environments[staging].namespace"),
    ({"name": "staging", "target": "gitops", "namespace": "x", "registry": "r"}, "environments[staging].gitops_repo"),
    ({"name": "staging", "target": "nomad"}, "field 'environments.0.target'"),
])
def test_bad_target_settings_name_file_field_and_fix(tmp_path: Path, environment: dict, message: str) -> None:
    from platform_assets.settings import SettingsError

    raw = yaml.safe_load(PRODUCTION.read_text())
    raw["environments"] = [environment]
    config = tmp_path / "platform.yaml"
    config.write_text(yaml.safe_dump(raw))
    with pytest.raises(SettingsError, match=re.escape(message)) as error:
        load_settings(config)
    assert str(config) in str(error.value)


def stage_context(name: str, settings_path: Path = PRODUCTION, deployed_model: dict | None = None) -> StageContext:
    """The context a deploy step of `name` gets in production, with no Dagster run around it."""
    from platform_assets.catalog import load_catalog
    from platform_assets.resources_config import platform_resources

    settings = load_settings(settings_path)
    deliverable = load_catalog(PROJECT_ROOT / "catalog", settings).deliverables[name]
    model = Deployed("7", deployed_model) if deployed_model else None
    return StageContext(deliverable=deliverable, settings=settings, artifacts=None, log=logging.getLogger(name),
                        deployed=lambda env: None, deployed_of=lambda upstream, env: model,
                        resources=SimpleNamespace(**platform_resources(settings)), platform_image=CODE_IMAGE)


@pytest.mark.parametrize("serving_compute", [None, "gpu-1"])
def test_rendered_model_server_is_valid_restricted_and_keeps_the_token_secret(serving_compute: str | None) -> None:
    from platform_assets.handlers.model import ModelHandler

    ctx = stage_context("churn-model")
    model = ctx.spec.model.model_copy(update={"serving_compute": serving_compute})
    ctx.deliverable = dataclasses.replace(ctx.deliverable, spec=ctx.spec.model_copy(update={"model": model}))
    workload = ModelHandler().workload(ctx, "7", "staging")
    manifests = render(workload, RenderContext("staging", "ml-team-staging", CODE_IMAGE))

    assert [m["kind"] for m in manifests] == ["Deployment", "Service", "NetworkPolicy", "NetworkPolicy"]
    for manifest in manifests:
        assert_valid_and_restricted(manifest)
    deployment = manifests[0]
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"][MODEL_URI_ANNOTATION] == "models:/churn-model@staging"
    assert deployment["spec"]["replicas"] == ctx.spec.model.replicas
    pod = template["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MODEL_ALIAS"]["value"] == "staging" and env["PLATFORM_VERSION"]["value"] == "7"
    assert env["MLFLOW_TRACKING_URI"]["value"] == ctx.settings.mlflow.tracking_uri
    assert env["PLATFORM_MODEL_TOKEN"] == {"name": "PLATFORM_MODEL_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "model-token-churn-model-staging", "key": "token"}}}
    assert workload.secrets == {"model-token-churn-model-staging": {
        "token": model_token(ctx.settings, "churn-model", "staging")}}
    assert model_token(ctx.settings, "churn-model", "staging") not in json.dumps(manifests)
    assert json.loads(env["PLATFORM_TRUSTED_TYPES"]["value"]) == ctx.settings.models.trusted_types
    assert env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"]["value"] == "false"
    assert container["envFrom"] == [{"secretRef": {"name": n}} for n in ctx.settings.model_serving.env_secrets]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    gpu = serving_compute == "gpu-1"
    assert ("nvidia.com/gpu" in container["resources"]["limits"]) is gpu
    assert ("nodeSelector" in pod, "tolerations" in pod) == (gpu, gpu)
    egress = manifests[3]["spec"]["egress"]
    tracking = {"to": [{"namespaceSelector": {"matchExpressions": [{
        "key": "kubernetes.io/metadata.name", "operator": "In", "values": ["mlflow"]}]}}],
        "ports": [{"protocol": "TCP", "port": 5000}]}
    assert tracking in egress and {"ports": [{"protocol": "TCP", "port": 443}]} in egress


def test_a_service_on_kubernetes_calls_the_model_of_its_environment() -> None:
    from platform_assets.handlers.service import ServiceHandler

    model = {"url": "http://churn-model.ml-team-staging.svc.cluster.local", "namespace": "ml-team-staging",
             "port": 8080, "auth": "bearer"}
    workload = ServiceHandler().workload(stage_context("recommendations-api", deployed_model=model), "abc", "staging")
    manifests = render(workload, CTX)

    for manifest in manifests:
        assert_valid_and_restricted(manifest)
    [container] = manifests[0]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["CHURN_MODEL_URL"]["value"] == model["url"]
    assert env["CHURN_MODEL_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "model-token-churn-model-staging",
                                                                    "key": "token"}
    assert workload.secrets == {"model-token-churn-model-staging": {"token": model_token(
        load_settings(PRODUCTION), "churn-model", "staging")}}, "only that model's staging token"
    assert not any("value" in e and len(e["value"]) > 30 and e["name"].endswith("TOKEN") for e in container["env"])
    [egress] = [m for m in manifests if m["metadata"]["name"] == "recommendations-api-egress"]
    assert egress["spec"]["egress"][0]["to"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == \
        ["ml-team-staging"]


def test_a_model_server_needs_a_tracking_server_on_kubernetes(tmp_path: Path) -> None:
    from platform_assets.handlers.model import ModelHandler
    from resources.deploy_target import DeployFailed

    raw = yaml.safe_load(PRODUCTION.read_text())
    del raw["mlflow"]
    config = tmp_path / "platform.yaml"
    config.write_text(yaml.safe_dump(raw))

    with pytest.raises(DeployFailed, match=r"platform.yaml: field 'mlflow.tracking_uri' must name a tracking server"):
        ModelHandler().workload(stage_context("churn-model", config), "7", "staging")


def test_an_unknown_serving_profile_names_the_field(tmp_path: Path) -> None:
    from platform_assets.catalog import load_catalog
    from tests.conftest import copy_deliverable

    copy_deliverable("churn-model", tmp_path, standalone=True)
    spec = tmp_path / "churn-model" / "deliverable.yaml"
    spec.write_text(spec.read_text().replace("  training_table:", "  serving_compute: gpu-2\n  training_table:"))

    [error] = load_catalog(tmp_path, load_settings(PRODUCTION)).errors
    assert error.field == "model.serving_compute" and "unknown compute profile 'gpu-2'" in error.message
