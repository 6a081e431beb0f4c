"""Deliverable code on Kubernetes: a pod of its own, in its team's build namespace, holding no
platform credential (DESIGN.md, "Trust boundaries").

The step that asks (a build or evaluate step, which holds Dagster's and the platform's credentials)
only launches the pod with dagster-k8s's `execute_k8s_job` and reads its result. The pod runs under
the team's builder service account (no RBAC binding, no token mounted), with the task's declared
variables and Secret references and nothing else: no instance storage, no DAGSTER_HOME, no cloud
keys, no platform token. `execute_k8s_job` starts from the run launcher's and the code location's
container config (their `envFrom` of platform Secrets included), so every field that could carry
a credential or an identity is set here and merged SHALLOW: ours replace theirs.

Files travel through the artifact bucket (resources/sandbox_transport.py): the step uploads the
task's folder and presigns URLs; the pod's entry (platform_assets/sandbox_pod.py) downloads,
runs, and uploads the declared outputs and the result. The pod needs no credential for that.
"""

from __future__ import annotations

import re
import secrets
import time
import warnings
from typing import Any

import dagster as dg

from platform_assets.compute import step_k8s_config
from platform_assets.sandbox import PYTHON, SandboxResult, SandboxTask
from platform_assets.sandbox_pod import TRANSPORT_ENV
from platform_assets.settings import ComputeProfile
from resources.s3_artifact_store import s3_client
from resources.sandbox_transport import TaskTransport

SANDBOX_LABEL = "platform.delivery/sandbox"
WORK_DIR = "/sandbox"  # the pod's only writable folder (an emptyDir)
ENTRY = ["python", "-m", "platform_assets.sandbox_pod", "--"]


class KubernetesSandbox(dg.ConfigurableResource):
    """The `sandbox` resource of kubernetes mode (platform.yaml `execution.kubernetes.sandbox_*`)."""

    namespace: str = "{team}-builds"
    service_account: str = "{team}-builder"
    image: str | None = None  # unset: the code location's image
    image_pull_policy: str = "IfNotPresent"
    run_as_user: int = 10001
    start_timeout_s: int = 600
    bucket: str = ""  # the artifact bucket (artifacts: {type: s3})
    prefix: str = "artifacts"
    endpoint_url: str | None = None
    region_name: str | None = None
    load_incluster_config: bool = True
    kubeconfig_file: str | None = None

    def run(self, task: SandboxTask, context: Any | None = None) -> SandboxResult:
        if context is None:
            raise ValueError("a Kubernetes sandbox needs the step's context: ctx.resources.sandbox.run(task, context)")
        if not self.bucket:
            raise dg.Failure("platform.yaml: sandbox pods exchange files through the artifact bucket; "
                             "set artifacts: {type: s3, bucket: ...} for kubernetes execution")
        token = secrets.token_hex(5)
        prefix = "/".join(p for p in (self.prefix.strip("/"), "_sandbox", task.deliverable, token) if p)
        transport = TaskTransport(s3_client(self.endpoint_url, self.region_name), self.bucket, prefix)
        transport.send_inputs(task.workdir)
        try:
            # The URLs outlive the pod's deadline a little, so a late upload still lands.
            urls = transport.pod_transport(task.outputs, task.timeout_s, sorted(task.secret_env),
                                           self.deadline_s(task) + 60, sorted({*task.env, *task.secret_env}))
            job = self.job(task, pod_image(self.image, context), token, urls)
            stopped = self._execute(context, job)
            if stopped is not None:
                return stopped
            reported = transport.result()
            if reported is None:
                raise dg.Failure(f"sandbox pod {job['k8s_job_name']} ({job['namespace']}) ended without a result")
            if reported.get("outputs"):
                transport.receive_outputs(task.workdir, task.outputs)
            return _result(reported)
        finally:
            transport.delete()

    def deadline_s(self, task: SandboxTask) -> int:
        """How long the pod may take from its creation: being scheduled and started, then the task."""
        return int(task.timeout_s) + self.start_timeout_s

    def job(self, task: SandboxTask, image: str, token: str, transport: str) -> dict[str, Any]:
        """The keyword arguments of `execute_k8s_job` for `task` (plain data, no kubernetes import)."""
        config = step_k8s_config(task.profile_name or "namespace-default", task.profile or ComputeProfile(),
                                 self.run_as_user)
        labels = {**config["pod_template_spec_metadata"]["labels"], SANDBOX_LABEL: "true",
                  "platform.delivery/deliverable": task.deliverable, "platform.delivery/team": task.team,
                  "platform.delivery/purpose": _slug(task.purpose)}
        return {
            "image": image,
            "image_pull_policy": self.image_pull_policy,
            "command": ENTRY,
            "args": [("python" if part == PYTHON else part) for part in task.command],
            "namespace": self.namespace.format(team=task.team),
            "service_account_name": self.service_account.format(team=task.team),
            "k8s_job_name": f"sandbox-{_slug(task.purpose)}-{token}",
            "timeout": self.deadline_s(task),
            "container_config": {
                **config["container_config"],
                "env": _env(task, transport),
                "env_from": [],  # never the platform's Secrets, whatever the launcher or code location says
                "volume_mounts": [{"name": "sandbox", "mount_path": WORK_DIR}],
                "working_dir": WORK_DIR,
            },
            "pod_spec_config": {
                **config["pod_spec_config"],
                "automount_service_account_token": False,
                "enable_service_links": False,  # no variables describing the namespace's Services
                "volumes": [{"name": "sandbox", "empty_dir": {}}],
                "image_pull_secrets": [],  # pulls use the builder service account's own, if any
            },
            "pod_template_spec_metadata": {**config["pod_template_spec_metadata"], "labels": labels},
            "job_metadata": {"labels": labels},
            "job_spec_config": {"backoff_limit": 0, "ttl_seconds_after_finished": 3600,
                                "active_deadline_seconds": self.deadline_s(task)},
        }

    def _execute(self, context: Any, job: dict[str, Any]) -> SandboxResult | None:
        """Run the Job; a pod that never finished is a timed-out result, any other failure a clear error."""
        from dagster_k8s import execute_k8s_job
        from dagster_k8s.job import K8sConfigMergeBehavior

        started = time.monotonic()
        try:
            with warnings.catch_warnings():  # "superseded by PipesK8sClient": the pod speaks no Pipes protocol
                warnings.simplefilter("ignore", dg.SupersessionWarning)
                execute_k8s_job(getattr(context, "op_execution_context", context), **job,
                                merge_behavior=K8sConfigMergeBehavior.SHALLOW,
                                load_incluster_config=self.load_incluster_config,
                                kubeconfig_file=self.kubeconfig_file)
        except Exception as exc:
            where = f"sandbox pod {job['k8s_job_name']} in {job['namespace']}"
            if time.monotonic() - started >= job["timeout"]:
                return SandboxResult(None, f"{where} did not finish within {job['timeout']}s "
                                           "(waiting to be scheduled, pulling its image, or running)", timed_out=True)
            raise dg.Failure(f"{where} failed: {_first_lines(str(exc))}",
                             metadata={"namespace": job["namespace"], "job": job["k8s_job_name"]}) from None
        return None


def _env(task: SandboxTask, transport: str) -> list[dict[str, Any]]:
    """The task's declared variables, its declared Secret references, and the transport: nothing else."""
    env: list[dict[str, Any]] = [{"name": name, "value": value} for name, value in task.env.items()]
    env += [{"name": name, "value_from": {"secret_key_ref": {"name": secret, "key": key}}}
            for name, (secret, key) in task.secret_env.items()]
    return [*env, {"name": TRANSPORT_ENV, "value": transport}]


def pod_image(configured: str | None, context: Any) -> str:
    """The configured image, else the code location's: it holds the pod's entry and the platform's Python."""
    origin = context.dagster_run.job_code_origin
    image = configured or (origin.repository_origin.container_image if origin else None)
    if not image:
        raise dg.Failure("no image for sandbox pods: the code location reports none; "
                         "set execution.kubernetes.sandbox_image in platform.yaml")
    return image


def _result(reported: dict[str, Any]) -> SandboxResult:
    """The pod's report, read as untrusted data."""
    code = reported.get("exit_code")
    return SandboxResult(int(code) if code is not None else None, str(reported.get("output", "")),
                         bool(reported.get("timed_out", code is None)))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:30].strip("-") or "task"


def _first_lines(text: str, lines: int = 25) -> str:
    return "\n".join(text.splitlines()[:lines])
