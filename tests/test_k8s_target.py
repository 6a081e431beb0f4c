"""The Kubernetes deploy target: server-side apply, rollout wait, rollback to the last good release.

There is no Kubernetes cluster here (no container runtime), so these tests run the target, with
the official kubernetes python client, against tests/k8s_api_server.py: a small HTTP server that
stands in for the API server and simulates the deployment controller. The GitOps target is tested
against a real git repository in a temporary folder.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from platform_assets.settings import PROJECT_ROOT, load_settings
from resources.deploy_target import DeployFailed, Workload
from resources.gitops_target import GitOpsTarget
from resources.k8s_client import FIELD_MANAGER
from resources.k8s_target import KubernetesTarget
from tests.conftest import Platform
from tests.k8s_api_server import APPLY, FakeApiServer
from tests.k8s_schema import assert_valid_and_restricted, manifests_in

REGISTRY = "registry.test/delivery"
NAMESPACE = "recs-team-staging"


def workload(version: str, **overrides) -> Workload:
    settings = load_settings()
    fields = {"deliverable": "recommendations-api", "kind": "service", "version": version, "team": "recs-team",
              "port": 8080, "health_path": "/health", "profile_name": "cpu-small",
              "profile": settings.profile("cpu-small"),
              "command": ["python", "-m", "uvicorn", "recommendations_api.app:app", "--port", "8080"]}
    return Workload(**{**fields, **overrides})


@pytest.fixture
def api() -> Iterator[tuple[FakeApiServer, str]]:
    server = FakeApiServer()
    host = server.start()
    yield server, host
    server.stop()


@pytest.fixture
def target(api: tuple[FakeApiServer, str], tmp_path: Path) -> KubernetesTarget:
    server, host = api
    return KubernetesTarget(environment="staging", namespace="{team}-staging", registry=REGISTRY,
                            kubeconfig_file=str(server.kubeconfig(tmp_path / "kubeconfig", host)),
                            rollout_timeout_s=5.0, poll_interval_s=0.02)


def deployed_image(server: FakeApiServer) -> str:
    deployment = server.get("deployments", NAMESPACE, "recommendations-api")
    assert deployment is not None
    return deployment["spec"]["template"]["spec"]["containers"][0]["image"]


def release_version(server: FakeApiServer) -> str:
    record = server.get("configmaps", NAMESPACE, "recommendations-api-release")
    assert record is not None
    return record["data"]["version"]


def test_first_deploy_applies_server_side_and_records_the_release(api, target: KubernetesTarget) -> None:
    server, _ = api
    result = target.deploy_workload(workload("v1"))

    assert result["version"] == "v1" and result["namespace"] == NAMESPACE
    assert result["image"] == f"{REGISTRY}/recommendations-api:v1"
    assert result["previous_version"] is None
    patches = [(path, ctype, query) for method, path, ctype, query in server.requests if method == "PATCH"]
    assert {path.rsplit("/", 2)[-2] for path, _, _ in patches} == {
        "deployments", "services", "horizontalpodautoscalers", "networkpolicies", "configmaps"}
    assert all(ctype == APPLY and query["fieldManager"] == [FIELD_MANAGER] and query["force"] == ["true"]
               for _, ctype, query in patches)
    assert deployed_image(server) == f"{REGISTRY}/recommendations-api:v1"
    assert release_version(server) == "v1"
    assert target.verify(result) == (True, "1 replica(s) of v1 ready (readiness probe on the health path)")


def test_failed_rollout_rolls_back_to_the_previous_release(api, target: KubernetesTarget) -> None:
    server, _ = api
    target.deploy_workload(workload("v1"))
    server.failing_images.add(f"{REGISTRY}/recommendations-api:v2")

    with pytest.raises(DeployFailed) as failure:
        target.deploy_workload(workload("v2"))

    message = str(failure.value)
    assert "recommendations-api v2 did not roll out in recs-team-staging: progress deadline exceeded" in message
    assert "rolled back to v1 and it is available again" in message
    assert failure.value.metadata["rolled_back_to"] == "v1"
    assert deployed_image(server) == f"{REGISTRY}/recommendations-api:v1"
    assert release_version(server) == "v1"
    assert target.verify({"version": "v1", "workload": "recommendations-api", "namespace": NAMESPACE})[0]


def test_rollout_that_never_becomes_available_times_out_and_rolls_back(api, target: KubernetesTarget) -> None:
    server, _ = api
    server.deadline_exceeded = False
    target.deploy_workload(workload("v1"))
    server.failing_images.add(f"{REGISTRY}/recommendations-api:v2")
    quick = target.model_copy(update={"rollout_timeout_s": 0.5})

    with pytest.raises(DeployFailed, match=r"not rolled out within 0.5s: .*rolled back to v1"):
        quick.deploy_workload(workload("v2"))

    assert deployed_image(server) == f"{REGISTRY}/recommendations-api:v1"


def test_failed_first_deploy_leaves_nothing_behind(api, target: KubernetesTarget) -> None:
    server, _ = api
    server.failing_images.add(f"{REGISTRY}/recommendations-api:v1")

    with pytest.raises(DeployFailed, match="nothing ran before, so the new objects were removed"):
        target.deploy_workload(workload("v1"))

    assert server.objects == {}


def test_objects_new_in_a_failed_release_are_removed_on_rollback(api, target: KubernetesTarget) -> None:
    """v1 had no autoscaler; v2 adds one and fails: rolling back must not leave v2's HPA around."""
    server, _ = api
    v1 = target.render(workload("v1"))
    target.ship(workload("v1"), [m for m in v1 if m["kind"] != "HorizontalPodAutoscaler"])
    server.failing_images.add(f"{REGISTRY}/recommendations-api:v2")

    with pytest.raises(DeployFailed):
        target.deploy_workload(workload("v2"))

    assert server.get("horizontalpodautoscalers", NAMESPACE, "recommendations-api") is None
    assert deployed_image(server) == f"{REGISTRY}/recommendations-api:v1"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def git_repo(folder: Path) -> Path:
    """An empty GitOps repository."""
    folder.mkdir()
    _git(folder, "init", "-q")
    return folder


def test_gitops_writes_valid_manifests_and_commits(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "gitops")
    target = GitOpsTarget(environment="prod", namespace="{team}-prod", registry=REGISTRY, repo_path=str(repo))

    first = target.deploy_workload(workload("v1"))
    second = target.deploy_workload(workload("v2"))

    folder = repo / "prod" / "recommendations-api"
    assert second["path"] == str(folder) and first["commit"] != second["commit"]
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in folder.glob("*.yaml")
                                                         if p.name != "kustomization.yaml")
    manifests = [m for name in kustomization["resources"] for m in manifests_in(folder / name)]
    assert {m["kind"] for m in manifests} == {"Deployment", "Service", "HorizontalPodAutoscaler", "NetworkPolicy"}
    for manifest in manifests:
        assert_valid_and_restricted(manifest)
        assert manifest["metadata"]["namespace"] == "recs-team-prod"
    log = _git(repo, "log", "--format=%s").splitlines()
    assert log == ["deploy recommendations-api v2 to prod", "deploy recommendations-api v1 to prod"]
    assert target.verify(second)[0]
    assert target.deploy_workload(workload("v2"))["commit"] == second["commit"], "no change, no commit"


@pytest.fixture
def cluster_platform(api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Platform:
    """The demo service with staging on the (stand-in) cluster and prod in a GitOps repository."""
    server, host = api
    repo = git_repo(tmp_path / "gitops")
    config = yaml.safe_load((PROJECT_ROOT / "platform.yaml").read_text())
    config["environments"] = [
        {"name": "staging", "target": "kubernetes", "namespace": "{team}-staging", "registry": REGISTRY},
        {"name": "prod", "target": "gitops", "namespace": "{team}-prod", "registry": REGISTRY,
         "gitops_repo": str(repo)},
    ]
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("PLATFORM_CONFIG", str(tmp_path / "platform.yaml"))
    monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig(tmp_path / "kubeconfig", host)))
    return request.getfixturevalue("platform")


def test_service_pipeline_deploys_to_the_cluster_then_to_gitops(api, cluster_platform: Platform) -> None:
    server, _ = api
    keys = ["recommendations-api/build", "recommendations-api/evaluate", "recommendations-api/staging",
            "recommendations-api/prod"]

    result = cluster_platform.materialize(*keys)

    assert result.success, [e.message for e in result.all_events if e.is_failure]
    version = cluster_platform.latest("recommendations-api/build")["version"]
    staging = cluster_platform.latest("recommendations-api/staging")
    assert staging["image"] == f"{REGISTRY}/recommendations-api:{version}"
    assert staging["namespace"] == NAMESPACE
    assert deployed_image(server) == f"{REGISTRY}/recommendations-api:{version}"
    prod = cluster_platform.latest("recommendations-api/prod")
    folder = Path(prod["path"])
    assert folder.parts[-2:] == ("prod", "recommendations-api")
    assert f"{REGISTRY}/recommendations-api:{version}" in next(folder.glob("deployment-*.yaml")).read_text()
    assert all(e.passed for e in result.get_asset_check_evaluations())


TOKEN_VALUE = "pair-token-value-0123456789"


def with_model_token(version: str) -> Workload:
    """The demo service calling churn-model in staging: its token from a per-(model, env) Secret."""
    secret = "model-token-churn-model-staging"
    return workload(version, secret_env={"CHURN_MODEL_TOKEN": (secret, "token")},
                    secrets={secret: {"token": TOKEN_VALUE}})


def test_the_target_creates_the_token_secret_in_the_namespace_before_the_rollout(api, target: KubernetesTarget) -> None:
    import base64
    import json

    server, _ = api
    target.deploy_workload(with_model_token("v1"))

    secret = server.get("secrets", NAMESPACE, "model-token-churn-model-staging")
    assert secret is not None and secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"]["token"]).decode() == TOKEN_VALUE
    patched = [path.rsplit("/", 2)[-2] for method, path, _, _ in server.requests if method == "PATCH"]
    assert patched.index("secrets") < patched.index("deployments"), "the Secret exists before the pods start"
    [container] = server.get("deployments", NAMESPACE, "recommendations-api")["spec"]["template"]["spec"]["containers"]
    assert {"name": "CHURN_MODEL_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "model-token-churn-model-staging", "key": "token"}}} in container["env"]
    assert TOKEN_VALUE not in json.dumps(server.get("configmaps", NAMESPACE, "recommendations-api-release"))
    assert TOKEN_VALUE not in repr(with_model_token("v1"))


def test_gitops_commits_the_secret_reference_never_its_value(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "gitops")
    target = GitOpsTarget(environment="staging", namespace="{team}-staging", registry=REGISTRY, repo_path=str(repo))

    result = target.deploy_workload(with_model_token("v1"))

    files = {path.name: path.read_text() for path in Path(result["path"]).glob("*.yaml")}
    assert "secretKeyRef" in files["deployment-recommendations-api.yaml"]
    assert not any(TOKEN_VALUE in text or "kind: Secret" in text for text in files.values())
    assert TOKEN_VALUE not in _git(repo, "log", "-p")
