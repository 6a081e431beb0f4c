"""Services: a Python web service with its own tests and an OpenAPI contract.

build: run the service's tests, build its wheel, export the contract, each in the sandbox with only
what the spec declares (its env, secrets and upstreams); version = source digest.
evaluate: gates `tests` and `api_compatibility` (against the contract running in the last env).
deploy: on a process target, install the wheel into an isolated environment and run it with
uvicorn; on a manifest target (Kubernetes, GitOps), run the version's image as a `service` workload.
Either way the app runs behind the platform's serving wrapper (platform_assets/serving.py), which
exposes its request metrics at `/-/metrics`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from platform_assets.compute import step_compute
from platform_assets.fingerprint import source_digest
from platform_assets.handlers.base import BuildFailed, GateResult, KindHandler, StageContext
from platform_assets.handlers.python_project import (
    ProjectError,
    ProjectSandbox,
    ProjectSettings,
    TestsGate,
    build_wheel,
    export_openapi,
    project_source,
    run_tests,
    tests_gate,
)
from platform_assets.handlers.upstreams import dependency_endpoints, dependency_env
from platform_assets.handlers.wheel_install import install_isolated
from platform_assets.kinds.service.openapi_compat import compare_contracts
from platform_assets.model_token import SECRET_KEY, model_token, token_secret_name
from platform_assets.secret_store import MissingSecret, resolve, secret_refs
from platform_assets.serving_metrics import served_command
from platform_assets.slo import Slo
from platform_assets.specs import DeliverableSpec, StrictModel
from resources.deploy_target import DeployFailed, DeployTarget, ProcessLaunch, Workload, probe
from resources.manifest_target import ManifestTarget

CONTRACT = "openapi.json"
TEST_REPORT = "tests.json"
CONTAINER_PORT = 8080  # deploy/service.Dockerfile exposes it


class ApiCompatibilityGate(StrictModel):
    allow_breaking_on_major: bool = False


class ServiceGates(StrictModel):
    tests: TestsGate = TestsGate()
    api_compatibility: ApiCompatibilityGate = ApiCompatibilityGate()


class ServiceSettings(ProjectSettings):
    app: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", description="ASGI app as module:attribute")
    health_path: str = Field(default="/health", pattern=r"^/")
    startup_timeout_s: float = Field(default=30.0, gt=0, le=600)


class ServiceSpec(DeliverableSpec):
    kind: Literal["service"]
    gates: ServiceGates = ServiceGates()
    service: ServiceSettings
    slo: Slo | None = None


SHOWN = 5  # breaking changes named in a gate's summary


class ServiceHandler(KindHandler):
    kind = "service"
    template = Path(__file__).with_name("template")
    technology = "fastapi"
    spec_model = ServiceSpec
    gates = ("tests", "api_compatibility")
    resources = frozenset({"sandbox"})
    serves = True
    follows_sources = True

    def spec_paths(self, spec: Any) -> dict[str, str]:
        """The source folder, and the Python path and tests inside it."""
        return spec.service.paths("service")

    def version(self, ctx: StageContext) -> str:
        return source_digest(_source(ctx))

    def build(self, ctx: StageContext, version: str) -> dict[str, Any]:
        settings: ServiceSettings = ctx.spec.service
        source = _source(ctx)
        with tempfile.TemporaryDirectory(prefix=f"build-{ctx.name}-") as tmp:
            project = _project_sandbox(ctx, source, Path(tmp))
            try:
                tests = run_tests(project, settings.tests, settings.python_path, settings.test_timeout_s)
                ctx.log.info(f"service tests: {tests.passed} passed, {tests.failed} failed, {tests.errors} errors")
                wheel = build_wheel(project, Path(tmp) / "dist")
                contract = _contract(ctx, project)
            except MissingSecret as exc:
                raise BuildFailed(_missing_secret(ctx, exc)) from exc
            stored_wheel = ctx.artifacts.put_file(ctx.name, version, wheel)
        ctx.artifacts.put_json(ctx.name, version, CONTRACT, contract)
        ctx.artifacts.put_json(ctx.name, version, TEST_REPORT, tests.as_dict())
        return {
            "version": version,
            "wheel": stored_wheel.name,
            "tests": {k: v for k, v in tests.as_dict().items() if k != "output_tail"},
            "contract_version": contract.get("info", {}).get("version"),
            "upstream_versions": ctx.upstream_versions,
        }

    def build_metadata(self, record: dict[str, Any]) -> dict[str, Any]:
        tests = record["tests"]
        return {
            "tests_passed": tests["passed"],
            "tests_failed": tests["failed"] + tests["errors"],
            "tests_skipped": tests.get("skipped", 0),
            "contract_version": record["contract_version"],
            "wheel": record["wheel"],
        }

    def evaluate(self, ctx: StageContext, version: str, record: dict[str, Any]) -> list[GateResult]:
        return [tests_gate(record["tests"], ctx.spec.gates.tests.min_passed), self._api_gate(ctx, version)]

    def _api_gate(self, ctx: StageContext, version: str) -> GateResult:
        new = ctx.artifacts.get_json(ctx.name, version, CONTRACT)
        baseline_env = ctx.settings.last_environment
        running = ctx.deployed(baseline_env)
        old = ctx.artifacts.get_json(ctx.name, running.version, CONTRACT) if running else None
        report = compare_contracts(old, new)
        allow = ctx.spec.gates.api_compatibility.allow_breaking_on_major
        passed = report.allowed(allow)
        summary = _api_summary(ctx, report, running.version if running else None, allow)
        return GateResult(
            "api_compatibility",
            passed,
            summary,
            {
                "breaking_changes": [str(change) for change in report.breaking],
                "baseline_version": running.version if running else None,
                "contract_version": report.new_version,
                "baseline_contract_version": report.old_version,
            },
        )

    def deploy(
        self, ctx: StageContext, version: str, record: dict[str, Any], target: DeployTarget
    ) -> dict[str, Any]:
        if isinstance(target, ManifestTarget):
            return target.deploy_workload(self.workload(ctx, version, target.environment))
        settings: ServiceSettings = ctx.spec.service
        try:
            secrets = resolve(ctx.spec.owner, secret_refs(settings.secrets))
        except MissingSecret as exc:
            raise DeployFailed(_missing_secret(ctx, exc), {"attempted_version": version}) from exc
        wheel = ctx.artifacts.path(ctx.name, version, record["wheel"])
        workspace = target.workspace(ctx.name, version)
        try:
            python = install_isolated(wheel, workspace / "venv")
        except ProjectError as exc:
            raise DeployFailed(str(exc), {"attempted_version": version}) from exc
        command, served = served_command(str(python), settings.app, "127.0.0.1", "{port}")
        launch = ProcessLaunch(
            deliverable=ctx.name,
            version=version,
            command=command,
            health_path=settings.health_path,
            workdir=workspace,
            env={"PLATFORM_VERSION": version, "PLATFORM_ENVIRONMENT": target.environment,
                 **dependency_env(ctx, target.environment), **settings.env, **served},
            secret_env=secrets,
            startup_timeout_s=settings.startup_timeout_s,
        )
        return target.deploy(launch)

    def workload(self, ctx: StageContext, version: str, environment: str) -> Workload:
        """The version's image (built by CI from deploy/service.Dockerfile) as a web service, sized
        by the deliverable's compute profile, pointed at its upstreams in `environment`: each model's
        token for that environment from its Secret in the service's namespace, never in the manifest."""
        settings: ServiceSettings = ctx.spec.service
        profile = ctx.spec.compute or ctx.settings.default_compute
        upstreams = dependency_endpoints(ctx, environment)
        secrets = {name: token_secret_name(ctx.settings, upstream, environment)
                   for name, upstream in upstreams.tokens.items()}
        command, served = served_command("python", settings.app, "0.0.0.0", str(CONTAINER_PORT))
        return Workload(
            deliverable=ctx.name,
            kind="service",
            version=version,
            team=ctx.spec.owner,
            port=CONTAINER_PORT,
            health_path=settings.health_path,
            command=command,
            profile_name=profile,
            profile=ctx.settings.profile(profile),
            env={**upstreams.urls, **settings.env, **served},
            secret_env={**{name: (secret, SECRET_KEY) for name, secret in secrets.items()},
                        **secret_refs(settings.secrets)},
            secrets={secrets[name]: {SECRET_KEY: model_token(ctx.settings, upstream, environment)}
                     for name, upstream in upstreams.tokens.items()},
            egress=upstreams.egress,
            startup_timeout_s=settings.startup_timeout_s,
        )

    def verify(self, ctx: StageContext, deployment: dict[str, Any], target: DeployTarget) -> GateResult:
        if isinstance(target, ManifestTarget):
            healthy, detail = target.verify(deployment)
            return GateResult("healthy", healthy, detail, {"namespace": deployment["namespace"]})
        healthy, detail = probe(deployment["health_url"])
        return GateResult("healthy", healthy, detail, {"health_url": deployment["health_url"]})


def _api_summary(ctx: StageContext, report: Any, baseline: str | None, allow: bool) -> str:
    """What the gate found, the breaking changes themselves, and the change to the spec or the
    contract that lets a deliberate break through."""
    env = ctx.settings.last_environment
    if baseline is None:
        return f"nothing runs in {env} yet; no contract to break"
    if report.compatible:
        return f"compatible with {baseline} in {env}"
    shown = "; ".join(str(change) for change in report.breaking[:SHOWN])
    more = len(report.breaking) - SHOWN
    found = (f"{len(report.breaking)} breaking change(s) against {baseline} in {env}: {shown}"
             + (f"; and {more} more" if more > 0 else ""))
    bump = f"{report.old_version} -> {report.new_version}"
    if report.allowed(allow):
        return f"{found}; allowed by the major version bump {bump}"
    field = f"set gates.api_compatibility.allow_breaking_on_major: true in {ctx.deliverable.path}"
    if report.major_bump:
        return (f"{found}. The contract bumps its major version ({bump}) but the spec does not allow breaking "
                f"changes on a major bump: {field} to ship them")
    hint = "bump the major version of info.version" + ("" if allow else f" and {field}")
    return f"{found}. Keep them compatible, or, to break clients on purpose, {hint} (now {report.new_version})"


def _project_sandbox(ctx: StageContext, source: Path, scratch: Path) -> ProjectSandbox:
    """The build's tests, wheel and contract see the spec's env and secrets and the first environment's
    upstreams (so contract tests can call them), nothing of the platform's."""
    settings: ServiceSettings = ctx.spec.service
    profile = step_compute(ctx.spec, "build", ctx.settings)
    return ProjectSandbox(
        sandbox=ctx.resources.sandbox, source=source, scratch=scratch, deliverable=ctx.name, team=ctx.spec.owner,
        env={**dependency_env(ctx, ctx.settings.environment_names[0]), **settings.env},
        secret_env=secret_refs(settings.secrets), profile_name=profile, profile=ctx.settings.profile(profile),
        context=ctx.step_context,
    )


def _contract(ctx: StageContext, project: ProjectSandbox) -> dict[str, Any]:
    settings: ServiceSettings = ctx.spec.service
    try:
        return export_openapi(project, settings.python_path, settings.app)
    except ProjectError as exc:
        raise BuildFailed(
            f"{exc}\nCheck field 'service.app' ({settings.app}) and 'service.python_path' "
            f"({settings.python_path}) in {ctx.deliverable.path}"
        ) from exc


def _missing_secret(ctx: StageContext, exc: MissingSecret) -> str:
    return f"{ctx.deliverable.path}: field 'service.secrets.{exc.variable}': {exc}"


def _source(ctx: StageContext) -> Path:
    return project_source(ctx.deliverable.path, "service", ctx.spec.service)
