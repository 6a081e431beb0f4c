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
from platform_assets.kinds.model.workload import MODEL_URI_ANNOTATION
from platform_assets.model_token import model_token, sample_token
from platform_assets.serving_metrics import METRICS_PATH, SERVED_APP_ENV, WRAPPER
from platform_assets.settings import PROJECT_ROOT, load_settings
from resources.deploy_target import Workload
from resources.k8s_manifests import MONITORING_NAMESPACE, RENDERERS, RenderContext, render
from tests.k8s_render import CODE_IMAGE
from tests.k8s_schema import assert_valid_and_restricted, manifests_in, restricted_violations, selects

DEPLOY = PROJECT_ROOT / "deploy"
NOT_MANIFESTS = {DEPLOY / "dagster.yaml", DEPLOY / "dagster.local.yaml", DEPLOY / "platform.kubernetes.yaml",
                 DEPLOY / "helm" / "values.yaml", DEPLOY / "helm" / "oauth2-proxy-values.yaml"}
PRODUCTION = DEPLOY / "platform.kubernetes.yaml"
COORDINATOR = ("platform_assets.identity.run_coordinator", "IdentityRunCoordinator")


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


def all_manifests() -> list[dict]:
    return [m for path in manifest_files() for m in manifests_in(path)]


def team_names() -> list[str]:
    return sorted(m["metadata"]["labels"]["platform.delivery/team"] for m in all_manifests()
                  if m["kind"] == "Namespace" and m["metadata"]["labels"].get("platform.delivery/purpose") == "builds")


def bindings_of(account: str) -> list[dict]:
    return [m for m in all_manifests() if m["kind"] in ("RoleBinding", "ClusterRoleBinding")
            and any(s.get("kind") == "ServiceAccount" and s["name"] == account for s in m.get("subjects") or [])]


def test_every_team_has_a_build_namespace_closed_but_for_dns_and_https() -> None:
    k8s = load_settings(PRODUCTION).execution.kubernetes
    manifests = all_manifests()
    assert team_names() == ["analytics", "ml-team", "recs-team"]
    for team in team_names():
        namespace = k8s.sandbox_namespace.format(team=team)
        own = [m for m in manifests if m["metadata"].get("namespace") == namespace]
        assert {"ResourceQuota", "LimitRange"} <= {m["kind"] for m in own}, namespace
        [account] = [m for m in own if m["kind"] == "ServiceAccount"]
        assert account["metadata"]["name"] == k8s.sandbox_service_account.format(team=team)
        assert account["automountServiceAccountToken"] is False
        policies = [m["spec"] for m in own if m["kind"] == "NetworkPolicy"]
        assert {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]} in policies, "default deny"
        assert not any(p.get("ingress") for p in policies), "nothing reaches a sandbox pod"
        egress = [rule for p in policies for rule in p.get("egress") or []]
        assert {port["port"] for rule in egress for port in rule["ports"]} == {53, 443}
        [https] = [rule for rule in egress if rule["ports"] == [{"protocol": "TCP", "port": 443}]]
        [block] = https["to"]
        assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(block["ipBlock"]["except"])
        dns = [rule for rule in egress if rule is not https]
        assert all(rule["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
                   for rule in dns)


def test_builder_accounts_are_bound_to_nothing() -> None:
    k8s = load_settings(PRODUCTION).execution.kubernetes
    for team in team_names():
        assert bindings_of(k8s.sandbox_service_account.format(team=team)) == []
    named = [s["name"] for m in all_manifests() if m["kind"] in ("RoleBinding", "ClusterRoleBinding")
             for s in m.get("subjects") or []]
    assert not [name for name in named if name.endswith("-builder")]


def test_the_deployer_is_bound_only_in_deploy_namespaces_and_steps_only_launch_sandboxes() -> None:
    settings = load_settings(PRODUCTION)
    k8s = settings.execution.kubernetes
    deploy_namespaces = {env.namespace_for(team) for team in team_names() for env in settings.environments}
    deployer = bindings_of(k8s.deployer_service_account_name)
    assert {b["kind"] for b in deployer} == {"RoleBinding"}
    assert {b["metadata"]["namespace"] for b in deployer} == deploy_namespaces
    assert {b["roleRef"]["name"] for b in deployer} == {"platform-deployer"}
    steps = bindings_of(k8s.service_account_name)
    assert {b["kind"] for b in steps} == {"RoleBinding"}
    assert {b["metadata"]["namespace"] for b in steps} == {k8s.sandbox_namespace.format(team=t) for t in team_names()}
    assert {b["roleRef"]["name"] for b in steps} == {"platform-sandbox-launcher"}
    [launcher] = [m for m in all_manifests() if m["kind"] == "ClusterRole"
                  and m["metadata"]["name"] == "platform-sandbox-launcher"]
    granted = {(group, resource): set(rule["verbs"]) for rule in launcher["rules"]
               for group in rule["apiGroups"] for resource in rule["resources"]}
    assert set(granted) == {("batch", "jobs"), ("batch", "jobs/status"), ("", "pods"), ("", "pods/log")}
    assert granted[("", "pods/log")] == {"get"} and "create" not in granted[("", "pods")], "no exec, no secrets"


def proxy_deployment() -> dict:
    [deployment] = [m for m in manifests_in(DEPLOY / "k8s" / "auth" / "oauth2-proxy.yaml") if m["kind"] == "Deployment"]
    return deployment


def test_the_authenticating_proxy_forwards_verified_identities_only() -> None:
    deployment = proxy_deployment()
    assert_valid_and_restricted(deployment)
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    args = set(container["args"])
    webserver = "http://dagster-dagster-webserver.dagster.svc.cluster.local:80/"
    assert {"--reverse-proxy=true", "--provider=oidc", "--pass-user-headers=true", "--skip-auth-strip-headers=true",
            f"--upstream={webserver}", "--cookie-secure=true"} <= args
    assert not [a for a in args if a.startswith(("--skip-auth-route", "--skip-auth-regex"))], "no bypass"
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert set(secrets) == {"OAUTH2_PROXY_OIDC_ISSUER_URL", "OAUTH2_PROXY_CLIENT_ID", "OAUTH2_PROXY_CLIENT_SECRET",
                            "OAUTH2_PROXY_COOKIE_SECRET"}
    assert {ref["name"] for ref in secrets.values()} == {"oauth2-proxy"}
    [ingress] = [m for m in manifests_in(DEPLOY / "k8s" / "auth" / "oauth2-proxy.yaml") if m["kind"] == "Ingress"]
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "oauth2-proxy"
    chart = yaml.safe_load((DEPLOY / "helm" / "oauth2-proxy-values.yaml").read_text())
    assert chart["config"]["existingSecret"] == "oauth2-proxy" and webserver in chart["config"]["configFile"]
    assert {"reverse-proxy", "pass-user-headers", "skip-auth-strip-headers"} <= set(chart["extraArgs"])
    assert all(chart["extraArgs"][flag] is True for flag in ("pass-user-headers", "skip-auth-strip-headers"))
    assert chart["extraEnv"][0]["valueFrom"]["secretKeyRef"]["name"] == "oauth2-proxy"
    assert chart["podLabels"] == {"platform.delivery/role": "auth-proxy"}


def test_the_webserver_admits_connections_from_the_proxy_pods_alone() -> None:
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    webserver = {**values["dagsterWebserver"]["labels"], "component": "dagster-webserver"}
    proxy = proxy_deployment()["spec"]["template"]["metadata"]["labels"]
    chart_proxy = yaml.safe_load((DEPLOY / "helm" / "oauth2-proxy-values.yaml").read_text())["podLabels"]
    policies = [m for m in all_manifests() if m["kind"] == "NetworkPolicy" and m["metadata"]["namespace"] == "dagster"]
    admitting = [p for p in policies if selects(p["spec"]["podSelector"], webserver) and p["spec"].get("ingress")]
    assert [p["metadata"]["name"] for p in admitting] == ["webserver-from-auth-proxy"]
    [rule] = admitting[0]["spec"]["ingress"]
    [source] = rule["from"]
    assert set(source) == {"podSelector"}, "no namespace or address range can reach it"
    assert selects(source["podSelector"], proxy) and selects(source["podSelector"], chart_proxy)
    for other in ({"component": "dagster-daemon"}, {"app.kubernetes.io/component": "step_worker"}, {}):
        assert not selects(source["podSelector"], other), other
    assert "ingress" not in values or not values["ingress"].get("enabled"), "no chart ingress around the proxy"


def test_helm_values_and_dagster_yaml_run_the_identity_coordinator_with_identity_everywhere() -> None:
    from dagster import QueuedRunCoordinator
    from dagster._config import validate_config

    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    daemon = values["dagsterDaemon"]
    assert daemon["runCoordinator"]["type"] == "CustomRunCoordinator"
    custom = daemon["runCoordinator"]["config"]["customRunCoordinator"]
    assert (custom["module"], custom["class"]) == COORDINATOR
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert (instance["run_coordinator"]["module"], instance["run_coordinator"]["class"]) == COORDINATOR
    for config in (custom["config"], instance["run_coordinator"].get("config", {})):
        assert validate_config(QueuedRunCoordinator.config_type(), config).success, "a QueuedRunCoordinator's"
    assert values["additionalInstanceConfig"]["nux"] == {"enabled": False} and instance["nux"] == {"enabled": False}

    [location] = values["dagster-user-deployments"]["deployments"]
    webserver = values["dagsterWebserver"]
    assert webserver["image"]["repository"] == daemon["image"]["repository"] == location["image"]["repository"]
    verified = {"name": "PLATFORM_IDENTITY_MODE", "value": "verified"}
    for component in (webserver, daemon, location):  # the location's env reaches run and step pods
        assert verified in component["env"] and {"name": "platform-identity"} in component["envSecrets"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert {"name": "platform-identity"} in launcher["envSecrets"]
    assert "PLATFORM_IDENTITY_MODE=verified" in launcher["envVars"]
    assert "platform-identity" in instance["run_launcher"]["config"]["env_secrets"]
    assert "platform-identity" in load_settings(PRODUCTION).execution.kubernetes.env_secrets


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
    assert_scraped(deployment, manifests[3], 8080)


def assert_scraped(deployment: dict, ingress: dict, port: int) -> None:
    """Prometheus finds the pod by its annotations and may reach the wrapper's port through the
    default-deny namespace."""
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert {k: v for k, v in annotations.items() if k.startswith("prometheus.io/")} == {
        "prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": METRICS_PATH}
    [rule] = ingress["spec"]["ingress"]
    namespaces = rule["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"]
    assert MONITORING_NAMESPACE in namespaces and rule["ports"] == [{"protocol": "TCP", "port": port}]


def test_an_unknown_workload_kind_names_the_registry() -> None:
    workload = service_workload("cpu-small")
    with pytest.raises(ValueError, match=r"no Kubernetes renderer for workload kind 'batch'.*workload_renderers"):
        render(Workload(**{**workload.__dict__, "kind": "batch"}), CTX)
    assert RENDERERS["model-server"].__module__ == "platform_assets.kinds.model.workload", "the model kind's own"


def test_a_kind_brings_its_own_kubernetes_shape_and_cannot_take_anothers(kind_registry: None) -> None:
    from platform_assets.kinds.registry import HANDLERS, register_kinds
    from tests.fixtures.kinds.static_site import render_static_files

    problems = register_kinds(["tests.fixtures.kinds.static_site:StaticSiteHandler",
                               "tests.fixtures.kinds.static_site:ShapeClash"])
    site = dataclasses.replace(service_workload("cpu-small"), deliverable="landing", kind="static-files",
                               command=["python", "-m", "http.server", "8080"], min_replicas=1)
    manifests = render(site, CTX)

    assert RENDERERS["static-files"] is render_static_files
    assert problems == [("kinds[1]", "'tests.fixtures.kinds.static_site:ShapeClash': workload kind 'service' is "
                                     "rendered by resources.k8s_manifests.render_service already")]
    assert "shape-clash" not in HANDLERS and RENDERERS["service"].__name__ == "render_service"
    assert [m["kind"] for m in manifests] == ["Deployment", "Service", "NetworkPolicy"]
    assert manifests[0]["spec"]["replicas"] == 1
    for manifest in manifests:
        assert_valid_and_restricted(manifest)


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
    assert "platform_assets/serving.py platform_assets/serving_metrics.py" in service, "the wrapper is in the image"
    assert "prometheus-client" in service and "ENV PYTHONPATH=/opt/platform" in service


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
    from platform_assets.kinds.model.handler import ModelHandler

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
    assert env["PLATFORM_SAMPLE_TOKEN"]["valueFrom"] == {"secretKeyRef": {
        "name": "model-token-churn-model-staging-sample", "key": "token"}}, "the platform's own token, apart"
    assert workload.secrets == {
        "model-token-churn-model-staging": {"token": model_token(ctx.settings, "churn-model", "staging")},
        "model-token-churn-model-staging-sample": {"token": sample_token(ctx.settings, "churn-model", "staging")}}
    assert model_token(ctx.settings, "churn-model", "staging") not in json.dumps(manifests)
    assert sample_token(ctx.settings, "churn-model", "staging") not in json.dumps(manifests)
    assert json.loads(env["PLATFORM_TRUSTED_TYPES"]["value"]) == ctx.settings.models.trusted_types
    assert env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"]["value"] == "false"
    assert container["envFrom"] == [{"secretRef": {"name": n}} for n in ctx.settings.model_serving.env_secrets]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["command"][:5] == ["python", "-m", "uvicorn", "--factory", WRAPPER]
    assert env[SERVED_APP_ENV]["value"] == "platform_assets.kinds.model.server:app"
    assert_scraped(deployment, manifests[2], 8080)
    gpu = serving_compute == "gpu-1"
    assert ("nvidia.com/gpu" in container["resources"]["limits"]) is gpu
    assert ("nodeSelector" in pod, "tolerations" in pod) == (gpu, gpu)
    egress = manifests[3]["spec"]["egress"]
    tracking = {"to": [{"namespaceSelector": {"matchExpressions": [{
        "key": "kubernetes.io/metadata.name", "operator": "In", "values": ["mlflow"]}]}}],
        "ports": [{"protocol": "TCP", "port": 5000}]}
    assert tracking in egress and {"ports": [{"protocol": "TCP", "port": 443}]} in egress


def test_a_service_on_kubernetes_calls_the_model_of_its_environment() -> None:
    from platform_assets.kinds.service.handler import ServiceHandler

    model = {"url": "http://churn-model.ml-team-staging.svc.cluster.local", "namespace": "ml-team-staging",
             "port": 8080, "auth": "bearer"}
    workload = ServiceHandler().workload(stage_context("recommendations-api", deployed_model=model), "abc", "staging")
    manifests = render(workload, CTX)

    for manifest in manifests:
        assert_valid_and_restricted(manifest)
    [container] = manifests[0]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert container["command"][:5] == ["python", "-m", "uvicorn", "--factory", WRAPPER]
    assert env[SERVED_APP_ENV]["value"] == "recommendations_api.app:app", "the app runs behind the wrapper"
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
    from platform_assets.kinds.model.handler import ModelHandler
    from resources.deploy_target import DeployFailed

    raw = yaml.safe_load(PRODUCTION.read_text())
    del raw["mlflow"]
    config = tmp_path / "platform.yaml"
    config.write_text(yaml.safe_dump(raw))

    with pytest.raises(DeployFailed, match=r"platform.yaml: field 'mlflow.tracking_uri' must name a tracking server"):
        ModelHandler().workload(stage_context("churn-model", config), "7", "staging")


def test_an_unknown_serving_profile_names_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from platform_assets.catalog import load_catalog
    from tests.conftest import copy_deliverable

    monkeypatch.setenv("PLATFORM_TEAMS_FILE", str(PROJECT_ROOT / "teams.yaml"))  # none beside deploy/'s platform.yaml
    copy_deliverable("churn-model", tmp_path, standalone=True)
    spec = tmp_path / "churn-model" / "deliverable.yaml"
    spec.write_text(spec.read_text().replace("  training_table:", "  serving_compute: gpu-2\n  training_table:"))

    [error] = load_catalog(tmp_path, load_settings(PRODUCTION)).errors
    assert error.field == "model.serving_compute" and "unknown compute profile 'gpu-2'" in error.message


def test_the_runtime_sensor_may_only_read_deployments_where_the_platform_deploys() -> None:
    settings = load_settings(PRODUCTION)
    deploy_namespaces = {env.namespace_for(team) for team in team_names() for env in settings.environments}
    readers = [b for b in bindings_of("dagster") if b["roleRef"]["name"] == "platform-runtime-reader"]
    assert {b["kind"] for b in readers} == {"RoleBinding"}
    assert {b["metadata"]["namespace"] for b in readers} == deploy_namespaces
    [role] = [m for m in all_manifests() if m["kind"] == "ClusterRole"
              and m["metadata"]["name"] == "platform-runtime-reader"]
    assert role["rules"] == [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]}]


def test_a_web_app_renders_as_its_image_with_the_environments_config() -> None:
    """One image per version (deploy/webapp.Dockerfile), its environment's config as a variable:
    the bundle is the same in staging and prod, the recommendations-api it calls is not."""
    from platform_assets.kinds.webapp.handler import CONFIG_ENV, IMAGE_ROOT, ROOT_ENV, WebappHandler

    configs = {}
    for env in ("staging", "prod"):
        api = f"http://recommendations-api.recs-team-{env}.svc.cluster.local:8080"
        ctx = stage_context("storefront", deployed_model={"url": api})
        manifests = render(WebappHandler().workload(ctx, "6f7731411a87", env),
                           RenderContext(env, f"recs-team-{env}", CODE_IMAGE))
        assert [m["kind"] for m in manifests][:2] == ["Deployment", "Service"]
        for manifest in manifests:
            assert_valid_and_restricted(manifest)
        [container] = manifests[0]["spec"]["template"]["spec"]["containers"]
        values = {e["name"]: e.get("value") for e in container["env"]}
        assert values[ROOT_ENV] == IMAGE_ROOT and values[SERVED_APP_ENV] == "platform_assets.kinds.webapp.server:app"
        assert container["readinessProbe"]["httpGet"]["path"] == "/"
        configs[env] = json.loads(values[CONFIG_ENV])
        assert configs[env] == {"environment": env, "upstreams": {"recommendations-api": api}}
    dockerfile = (DEPLOY / "webapp.Dockerfile").read_text()
    assert "platform_assets/kinds/webapp/server.py" in dockerfile and f"PLATFORM_WEBAPP_ROOT={IMAGE_ROOT}" in dockerfile
    assert re.search(r"^USER [1-9][0-9]*", dockerfile, re.MULTILINE)
