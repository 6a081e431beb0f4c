"""Deliverable code on Kubernetes runs in a pod of its own that holds no platform credential
(resources/k8s_sandbox.py), launched from a real Dagster step with dagster-k8s's `execute_k8s_job`.

No cluster can run here, so the Kubernetes API is tests/k8s_api_server.py: a real HTTP server and
the only mock in these tests. Its kubelet runs the pod's container as a local subprocess with
exactly the container's environment over the image's (deploy/Dockerfile's `ENV`), so the task
sees what the pod would see. S3 is moto's server. The step's instance has a K8sRunLauncher
configured as deploy/dagster.yaml configures it, platform Secrets in `env_secrets` included, and
those Secrets exist in the build namespace: anything the launcher leaked would reach the task.
"""

from __future__ import annotations

import base64
import io
import json
import shlex
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest
import yaml

from platform_assets.child_env import INHERITED
from platform_assets.sandbox import SandboxResult, SandboxTask
from platform_assets.settings import PROJECT_ROOT, load_settings
from resources.k8s_sandbox import KubernetesSandbox, pod_image
from resources.s3_artifact_store import S3ArtifactStore
from resources.sandbox_transport import OUTPUTS, TaskTransport
from tests.k8s_api_server import FakeApiServer
from tests.k8s_kubelet import LocalKubelet
from tests.k8s_schema import assert_valid_and_restricted

IMAGE = "registry.example.com/delivery/platform:0123abcd"
PRODUCTION = load_settings(PROJECT_ROOT / "deploy" / "platform.kubernetes.yaml")
TEAM, NAMESPACE = "ml-team", "ml-team-builds"
TOKEN = "per-model-token-value-42"
PLATFORM_SECRETS = {"platform-aws": {"AWS_ACCESS_KEY_ID": "AKIAPLATFORM", "AWS_SECRET_ACCESS_KEY": "platform"},
                    "platform-warehouse": {"PLATFORM_PG_PASSWORD": "warehouse-password"},
                    "platform-model-token": {"PLATFORM_MODEL_TOKEN": "platform-model-token"},
                    "platform-identity": {"PLATFORM_IDENTITY_KEY": "platform-hmac-key"},
                    "dagster-postgresql-secret": {"postgresql-password": "instance-password"}}
PROBE = """
import json, os, pathlib, sys
os.makedirs("out", exist_ok=True)
pathlib.Path("out/env.json").write_text(json.dumps(dict(os.environ)))
pathlib.Path("out/answer.txt").write_text(pathlib.Path("question.txt").read_text().upper())
print("the token is", os.environ.get("MODEL_TOKEN"))
sys.exit(int(sys.argv[1]))
"""


def dockerfile_env() -> dict[str, str]:
    """The `ENV` of deploy/Dockerfile, as the image gives it to every container, plus the base image's
    (python:3.11-slim) PATH, pointing at this interpreter as the image's `python`, and LANG."""
    text = (PROJECT_ROOT / "deploy" / "Dockerfile").read_text().replace("\\\n", " ")
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(part.split("=", 1) for part in shlex.split(line[4:]))
    return {**env, "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def secret(name: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NAMESPACE},
            "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[FakeApiServer, Path]]:
    nodes = tmp_path / "nodes"
    nodes.mkdir()
    server = FakeApiServer(kubelet=LocalKubelet(root=nodes, image_env={IMAGE: dockerfile_env()}))
    host = server.start()
    server.add(secret("churn-model-token", {"token": TOKEN}))
    for name, data in PLATFORM_SECRETS.items():
        server.add(secret(name, data))
    yield server, server.kubeconfig(tmp_path / "kubeconfig", host)
    server.stop()


@pytest.fixture
def instance(cluster: tuple[FakeApiServer, Path]) -> Iterator[dg.DagsterInstance]:
    """A K8sRunLauncher exactly as deploy/dagster.yaml configures it, pointed at the stand-in."""
    launcher = yaml.safe_load((PROJECT_ROOT / "deploy" / "dagster.yaml").read_text())["run_launcher"]
    launcher["config"].update(load_incluster_config=False, kubeconfig_file=str(cluster[1]))
    with dg.instance_for_test(overrides={"run_launcher": launcher}) as instance:
        yield instance


@pytest.fixture
def sandbox(s3: S3ArtifactStore, cluster: tuple[FakeApiServer, Path]) -> KubernetesSandbox:
    return KubernetesSandbox(image=IMAGE, bucket=s3.bucket, endpoint_url=s3.endpoint_url, region_name="us-east-1",
                             load_incluster_config=False, kubeconfig_file=str(cluster[1]), start_timeout_s=60)


def probe_task(tmp_path: Path, exit_code: int = 0, profile: str = "cpu-small", **overrides) -> SandboxTask:
    workdir = tmp_path / "task"
    workdir.mkdir()
    (workdir / "probe.py").write_text(PROBE)
    (workdir / "question.txt").write_text("does it travel?")
    fields = {"deliverable": "churn-model", "team": TEAM, "purpose": "train", "workdir": workdir,
              "command": ["{python}", "probe.py", str(exit_code)], "outputs": ("out",),
              "env": {"EPOCHS": "3"}, "secret_env": {"MODEL_TOKEN": ("churn-model-token", "token")},
              "profile_name": profile, "profile": PRODUCTION.profile(profile), "timeout_s": 60.0}
    return SandboxTask(**{**fields, **overrides})


def run_in_step(sandbox: KubernetesSandbox, task: SandboxTask,
                instance: dg.DagsterInstance) -> tuple[SandboxResult | None, dg.ExecuteInProcessResult]:
    """Run `task` from inside a real Dagster step, as a build or evaluate step does."""
    results: list[SandboxResult] = []

    @dg.asset(required_resource_keys={"sandbox"})
    def step(context) -> None:  # an AssetExecutionContext (a string annotation would not resolve here)
        results.append(context.resources.sandbox.run(task, context))

    outcome = dg.materialize([step], resources={"sandbox": sandbox}, instance=instance, raise_on_error=False)
    return (results[0] if results else None), outcome


def test_the_task_runs_in_its_own_pod_with_only_what_its_spec_declares(
        sandbox: KubernetesSandbox, instance: dg.DagsterInstance, cluster: tuple[FakeApiServer, Path],
        s3: S3ArtifactStore, tmp_path: Path) -> None:
    server, _ = cluster
    task = probe_task(tmp_path)

    result, outcome = run_in_step(sandbox, task, instance)

    assert outcome.success and result is not None, outcome.all_events
    assert result.ok and not result.timed_out
    assert (task.workdir / "out" / "answer.txt").read_text() == "DOES IT TRAVEL?", "outputs come back"
    assert "the token is ***" in result.output and TOKEN not in result.output
    seen = json.loads((task.workdir / "out" / "env.json").read_text())
    image = dockerfile_env()
    assert set(seen) == {*(set(image) & set(INHERITED)), "EPOCHS", "MODEL_TOKEN", "HOME", "TMPDIR",
                         "PYTHONNOUSERSITE", "PYTHONDONTWRITEBYTECODE"}, "the image's ENV stays with the pod"
    assert seen["PATH"] == image["PATH"]
    assert seen["MODEL_TOKEN"] == TOKEN and seen["EPOCHS"] == "3"
    assert not {"DAGSTER_HOME", "DAGSTER_PG_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "PLATFORM_PG_PASSWORD", "PLATFORM_MODEL_TOKEN", "PLATFORM_IDENTITY_KEY"} & set(seen)
    assert not [name for name in seen if name.startswith("AWS_")]

    [job] = server.created_jobs
    assert_valid_and_restricted(job)
    assert job["metadata"]["namespace"] == NAMESPACE
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["serviceAccountName"] == "ml-team-builder" and pod["automountServiceAccountToken"] is False
    assert not container.get("envFrom"), "no Secret of the platform arrives through envFrom"
    assert {e["name"] for e in container["env"]} == {"EPOCHS", "MODEL_TOKEN", "SANDBOX_TRANSPORT"}
    assert {"name": "MODEL_TOKEN", "valueFrom": {"secretKeyRef": {"name": "churn-model-token", "key": "token"}}} \
        in container["env"]
    assert container["image"] == IMAGE and container["args"] == ["python", "probe.py", "0"]
    assert container["resources"] == {"requests": {"cpu": "250m", "memory": "512Mi"},
                                      "limits": {"cpu": "1", "memory": "1Gi"}}
    assert not pod.get("volumes") or all("emptyDir" in v for v in pod["volumes"]), "no instance config, no secrets"
    assert "_sandbox" not in json.dumps(s3.client().list_objects_v2(Bucket=s3.bucket).get("Contents", []))


def test_a_failing_command_is_a_result_and_a_gpu_profile_gets_gpu_nodes(
        sandbox: KubernetesSandbox, instance: dg.DagsterInstance, cluster: tuple[FakeApiServer, Path],
        tmp_path: Path) -> None:
    result, outcome = run_in_step(sandbox, probe_task(tmp_path, exit_code=3, profile="gpu-1"), instance)

    assert outcome.success and result is not None and result.exit_code == 3 and not result.ok
    [job] = cluster[0].created_jobs
    assert_valid_and_restricted(job)
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["resources"]["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["priorityClassName"] == "platform-gpu"


def test_a_task_past_its_timeout_is_stopped_and_reported(sandbox: KubernetesSandbox, instance: dg.DagsterInstance,
                                                         tmp_path: Path) -> None:
    task = probe_task(tmp_path, command=["{python}", "-c", "import time; time.sleep(60)"], timeout_s=1.0)

    result, outcome = run_in_step(sandbox, task, instance)

    assert outcome.success and result is not None
    assert result.timed_out and result.exit_code is None


def test_a_pod_that_cannot_start_fails_the_step_with_a_clear_message(
        sandbox: KubernetesSandbox, instance: dg.DagsterInstance, cluster: tuple[FakeApiServer, Path],
        tmp_path: Path) -> None:
    cluster[0].failing_images.add(IMAGE)

    result, outcome = run_in_step(sandbox, probe_task(tmp_path), instance)

    assert result is None and not outcome.success
    [failure] = [e for e in outcome.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert f"in {NAMESPACE} failed" in message and "ErrImagePull" in message
    assert cluster[0].get("jobs", NAMESPACE, cluster[0].created_jobs[0]["metadata"]["name"]) is None, "deleted"


def test_only_declared_outputs_come_back_from_an_untrusted_pod(s3: S3ArtifactStore, tmp_path: Path) -> None:
    transport = TaskTransport(s3.client(), s3.bucket, "artifacts/_sandbox/x/1")
    sent = io.BytesIO()
    with tarfile.open(fileobj=sent, mode="w:gz") as archive:
        for name, data in (("out/ok.txt", b"ok"), ("probe.py", b"overwritten"), ("../escape.txt", b"x")):
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    s3.client().put_object(Bucket=s3.bucket, Key=transport.key(OUTPUTS), Body=sent.getvalue())
    workdir = tmp_path / "task"
    (workdir / "out").mkdir(parents=True)
    (workdir / "out" / "stale.txt").write_text("from before")
    (workdir / "probe.py").write_text("mine")

    transport.receive_outputs(workdir, ("out",))

    assert (workdir / "out" / "ok.txt").read_bytes() == b"ok" and not (workdir / "out" / "stale.txt").exists()
    assert (workdir / "probe.py").read_text() == "mine" and not (tmp_path / "escape.txt").exists()


def test_the_image_is_the_code_locations_unless_configured() -> None:
    def context(image: str | None) -> SimpleNamespace:
        origin = SimpleNamespace(repository_origin=SimpleNamespace(container_image=image)) if image else None
        return SimpleNamespace(dagster_run=SimpleNamespace(job_code_origin=origin))

    assert pod_image(None, context(IMAGE)) == IMAGE
    assert pod_image("registry.example.com/sandbox:1", context(IMAGE)) == "registry.example.com/sandbox:1"
    with pytest.raises(dg.Failure, match=r"execution\.kubernetes\.sandbox_image"):
        pod_image(None, context(None))


def test_kubernetes_mode_selects_the_pod_sandbox_on_the_artifact_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    from platform_assets.resources_config import sandbox_resource
    from platform_assets.sandbox import LocalSandbox

    monkeypatch.delenv("PLATFORM_EXECUTION_MODE", raising=False)
    selected = sandbox_resource(PRODUCTION)
    assert isinstance(selected, KubernetesSandbox)
    assert (selected.namespace, selected.service_account) == ("{team}-builds", "{team}-builder")
    assert selected.bucket == PRODUCTION.artifacts.bucket and selected.image is None
    monkeypatch.setenv("PLATFORM_EXECUTION_MODE", "local")
    assert isinstance(sandbox_resource(PRODUCTION), LocalSandbox)
