"""Web apps: a Node project (package.json and its lockfile) built with npm into a static bundle.

build: in the sandbox, `npm ci` (no dependency's install script runs), the build script, then
the test script (build.py); the bundle folder is the version's artifact; version = source
digest (node_modules and the build output are not source). evaluate: gates `tests`,
`bundle_size` (gzip bytes of the bundle) and `smoke` (the page opened in headless Chromium in the
sandbox with the first environment's config: no console error, uncaught error or failed request).
deploy: the same bundle per environment with that environment's `/config.json` (its name and the
addresses of its upstreams, resolved at deploy, not at build), served behind the environment's
stable address: locally `server.py` behind the serving wrapper and the gateway (a new
version takes the address once healthy; rollback is deploying the previous one); on Kubernetes the
version's image (CI: deploy/webapp.Dockerfile) as a `service` workload.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from platform_assets.compute import step_compute
from platform_assets.fingerprint import copy_sources, source_digest
from platform_assets.handlers.base import BuildFailed, GateResult, KindHandler, StageContext
from platform_assets.handlers.spec_paths import resolve_in_folder
from platform_assets.handlers.wheel_install import INDEX_ACCESS
from platform_assets.sandbox import PYTHON, SandboxTask
from platform_assets.serving_metrics import served_command
from platform_assets.specs import DeliverableSpec, StrictModel
from resources.deploy_target import DeployTarget, ProcessLaunch, Workload, probe
from resources.manifest_target import ManifestTarget

HERE = Path(__file__).parent
BUILDER, SMOKE = HERE / "build.py", HERE / "smoke.py"  # copied into the task's folder as:
BUILDER_COPY, SMOKE_COPY = ".platform-build.py", ".platform-smoke.py"
SERVER_APP = "platform_assets.kinds.webapp.server:app"
ROOT_ENV, CONFIG_ENV = "PLATFORM_WEBAPP_ROOT", "PLATFORM_WEBAPP_CONFIG"  # server.py reads them
BUNDLE, RESULT, JOB, SITE = "bundle.tar.gz", ".platform-result.json", ".platform-job.json", "site"
CONTAINER_PORT, IMAGE_ROOT = 8080, "/site"  # deploy/webapp.Dockerfile
CHROMIUM = os.environ.get("PLATFORM_CHROMIUM", "/usr/bin/chromium")  # Debian's; the image installs the same
# How npm reaches its registry (beside the index settings uv uses): no platform credential.
NPM_ACCESS = (*INDEX_ACCESS, "npm_config_registry", "NPM_CONFIG_REGISTRY")


class TestsGate(StrictModel):
    required: bool = Field(default=True, description="false: a project without a test script passes")


class BundleSizeGate(StrictModel):
    max_kb: float = Field(default=250.0, gt=0, description="the bundle's files, gzipped, in KiB")


class SmokeGate(StrictModel):
    timeout_s: float = Field(default=30.0, gt=0, le=300)


class WebappGates(StrictModel):
    tests: TestsGate = TestsGate()
    bundle_size: BundleSizeGate = BundleSizeGate()
    smoke: SmokeGate = SmokeGate()


class WebappSettings(StrictModel):
    source: str = "."
    output: str = Field(default="dist", description="the folder the build script writes the bundle to")
    build_script: str = "build"
    test_script: str | None = "test"
    page: str = Field(default="/", pattern=r"^/", description="the page the smoke check opens, and users")
    wait_for: str | None = Field(default=None, description="a CSS selector the smoke check waits to see")
    npm_timeout_s: float = Field(default=900.0, gt=0)
    env: dict[str, str] = Field(default_factory=dict, description="variables of the build (VITE_*, ...)")


class WebappSpec(DeliverableSpec):
    kind: Literal["webapp"]
    gates: WebappGates = WebappGates()
    webapp: WebappSettings = WebappSettings()


class WebappHandler(KindHandler):
    kind = "webapp"
    template = Path(__file__).with_name("template")
    technology = "npm"
    spec_model = WebappSpec
    gates = ("tests", "bundle_size", "smoke")
    resources = frozenset({"sandbox"})
    serves = True
    follows_sources = True

    def spec_paths(self, spec: Any) -> dict[str, str]:
        return {"webapp.source": spec.webapp.source}

    def version(self, ctx: StageContext) -> str:
        return source_digest(_source(ctx))

    def build(self, ctx: StageContext, version: str) -> dict[str, Any]:
        settings: WebappSettings = ctx.spec.webapp
        with tempfile.TemporaryDirectory(prefix=f"build-{ctx.name}-") as tmp:
            workdir = copy_sources(_source(ctx), Path(tmp) / "src")
            steps = _npm(ctx, workdir)
            failed = next((s for s in steps if s["exit_code"] != 0 and s["step"] != "tests"), None)
            if failed:
                raise BuildFailed(f"`{failed['command']}` failed (exit {failed['exit_code']}) in "
                                  f"{ctx.deliverable.folder}:\n{failed['output_tail']}")
            bundle = workdir / settings.output
            page = bundle / settings.page.lstrip("/")
            if not (page / "index.html").is_file() and not page.is_file():
                raise BuildFailed(f"`npm run {settings.build_script}` wrote no {settings.page} page into "
                                  f"{settings.output}/ (fields 'webapp.output', 'webapp.page' in "
                                  f"{ctx.deliverable.path})")
            files = _sizes(bundle)
            archive = shutil.make_archive(str(Path(tmp) / "bundle"), "gztar", bundle)
            ctx.artifacts.put_file(ctx.name, version, Path(archive), BUNDLE)
        tests = next((s for s in steps if s["step"] == "tests"), None)
        return {"version": version, "bundle": BUNDLE, "files": files,
                "bytes": sum(f[0] for f in files.values()), "gzip_bytes": sum(f[1] for f in files.values()),
                "tests": tests, "npm": [{k: s[k] for k in ("step", "command", "seconds")} for s in steps],
                "upstream_versions": ctx.upstream_versions}

    def build_metadata(self, record: dict[str, Any]) -> dict[str, Any]:
        tests = record["tests"]
        return {"files": len(record["files"]), "bundle_bytes": record["bytes"],
                "bundle_gzip_bytes": record["gzip_bytes"],
                "tests": "none" if tests is None else ("passed" if tests["exit_code"] == 0 else "failed")}

    def evaluate(self, ctx: StageContext, version: str, record: dict[str, Any]) -> list[GateResult]:
        return [_tests_gate(ctx, record), _size_gate(ctx, record), _smoke_gate(ctx, version, record)]

    def deploy(self, ctx: StageContext, version: str, record: dict[str, Any], target: DeployTarget) -> dict[str, Any]:
        config = site_config(ctx, target.environment)
        if isinstance(target, ManifestTarget):
            return target.deploy_workload(self.workload(ctx, version, target.environment))
        workspace = target.workspace(ctx.name, version)
        site = workspace / SITE
        if not site.exists():  # the same files for every deploy of this version here
            shutil.unpack_archive(ctx.artifacts.path(ctx.name, version, record["bundle"]), site)
        command, served = served_command(sys.executable, SERVER_APP, "127.0.0.1", "{port}")
        deployed = target.deploy(ProcessLaunch(
            deliverable=ctx.name, version=version, command=command, health_path=ctx.spec.webapp.page,
            workdir=workspace, env={ROOT_ENV: str(site), CONFIG_ENV: json.dumps(config, sort_keys=True),
                                    "PLATFORM_VERSION": version, "PLATFORM_ENVIRONMENT": target.environment, **served}))
        return {**deployed, "url": deployed["url"].rstrip("/") + ctx.spec.webapp.page}

    def workload(self, ctx: StageContext, version: str, environment: str) -> Workload:
        """The version's image (the bundle in the platform image, deploy/webapp.Dockerfile) served by
        server.py, with the environment's config, reachable from its namespace's callers."""
        profile = ctx.spec.compute or ctx.settings.default_compute
        command, served = served_command("python", SERVER_APP, "0.0.0.0", str(CONTAINER_PORT))
        return Workload(
            deliverable=ctx.name, kind="service", version=version, team=ctx.spec.owner, port=CONTAINER_PORT,
            health_path=ctx.spec.webapp.page, command=command, profile_name=profile,
            profile=ctx.settings.profile(profile),
            env={ROOT_ENV: IMAGE_ROOT, CONFIG_ENV: json.dumps(site_config(ctx, environment), sort_keys=True),
                 "PLATFORM_ENVIRONMENT": environment, **served})

    def verify(self, ctx: StageContext, deployment: dict[str, Any], target: DeployTarget) -> GateResult:
        if isinstance(target, ManifestTarget):
            healthy, detail = target.verify(deployment)
            return GateResult("healthy", healthy, detail, {"namespace": deployment["namespace"]})
        healthy, detail = probe(deployment["health_url"])
        return GateResult("healthy", healthy, detail,
                          {"health_url": deployment["health_url"], "url": deployment["url"]})


def site_config(ctx: StageContext, env: str) -> dict[str, Any]:
    """What the page reads from `/config.json` in `env`: the stable URL of each upstream served there."""
    upstreams = {}
    for upstream in ctx.spec.depends_on:
        deployed = ctx.deployed_of(upstream, env)
        if deployed is not None and deployed.metadata.get("url"):
            upstreams[upstream] = str(deployed.metadata["url"])
    return {"environment": env, "upstreams": upstreams}


def _npm(ctx: StageContext, workdir: Path) -> list[dict[str, Any]]:
    """npm ci, build, tests in one sandbox task (node_modules stays between them)."""
    settings: WebappSettings = ctx.spec.webapp
    steps = [("install", ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"]),
             ("build", ["npm", "run", settings.build_script])]
    if settings.test_script:
        steps.append(("tests", ["npm", "run", settings.test_script]))
    shutil.copyfile(BUILDER, workdir / BUILDER_COPY)
    (workdir / JOB).write_text(json.dumps({"steps": steps, "timeout_s": settings.npm_timeout_s, "result": RESULT}))
    access = {key: os.environ[key] for key in NPM_ACCESS if key in os.environ}
    profile = step_compute(ctx.spec, "build", ctx.settings)
    task = SandboxTask(
        deliverable=ctx.name, team=ctx.spec.owner, purpose="npm", command=[PYTHON, BUILDER_COPY, JOB],
        workdir=workdir, outputs=(settings.output, RESULT), profile_name=profile, profile=ctx.settings.profile(profile),
        env={**access, "npm_config_cache": str(npm_cache_dir()), "npm_config_update_notifier": "false",
             **settings.env},
        timeout_s=settings.npm_timeout_s * len(steps) + 60, redacted_outputs=(RESULT,))
    result = ctx.resources.sandbox.run(task, ctx.step_context)
    if not (workdir / RESULT).is_file():
        raise BuildFailed(f"the npm build of {ctx.name} did not finish ({result.exit_code}):\n{result.output}")
    for step in json.loads((workdir / RESULT).read_text()):
        ctx.log.info(f"{step['command']}: exit {step['exit_code']} in {step['seconds']}s")
    return json.loads((workdir / RESULT).read_text())


def npm_cache_dir() -> Path:
    """npm's cache, shared by every build (tarballs are checked against the lockfile's integrity)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "platform-npm"


def _sizes(bundle: Path) -> dict[str, list[int]]:
    """Each file of the bundle: [bytes, gzip bytes]."""
    return {p.relative_to(bundle).as_posix(): [p.stat().st_size, len(gzip.compress(p.read_bytes(), mtime=0))]
            for p in sorted(bundle.rglob("*")) if p.is_file()}


def _tests_gate(ctx: StageContext, record: dict[str, Any]) -> GateResult:
    tests = record["tests"]
    if tests is None:
        required = ctx.spec.gates.tests.required
        return GateResult("tests", not required, "no test script (webapp.test_script)" + (
            "; set gates.tests.required: false to ship without tests" if required else ""))
    passed = tests["exit_code"] == 0
    return GateResult("tests", passed, f"`{tests['command']}` " + ("passed" if passed else
                      f"failed (exit {tests['exit_code']}):\n{tests['output_tail'][-1500:]}"),
                      {"output_tail": tests["output_tail"]})


def _size_gate(ctx: StageContext, record: dict[str, Any]) -> GateResult:
    budget = ctx.spec.gates.bundle_size.max_kb
    kib = record["gzip_bytes"] / 1024
    largest = sorted(record["files"].items(), key=lambda item: -item[1][1])[:3]
    shown = ", ".join(f"{name} {gz / 1024:.1f} KiB" for name, (_, gz) in largest)
    passed = kib <= budget
    return GateResult("bundle_size", passed, f"{kib:.1f} KiB gzipped of {budget:g} KiB (largest: {shown})" + (
        "" if passed else "; shrink the bundle or raise gates.bundle_size.max_kb"),
        {"gzip_kib": round(kib, 2), "bytes": record["bytes"]})


def _smoke_gate(ctx: StageContext, version: str, record: dict[str, Any]) -> GateResult:
    """The page in headless Chromium, in the sandbox, with the first environment's config."""
    settings: WebappSettings = ctx.spec.webapp
    env = ctx.settings.environment_names[0]
    config = site_config(ctx, env)
    with tempfile.TemporaryDirectory(prefix=f"smoke-{ctx.name}-") as tmp:
        workdir = Path(tmp)
        shutil.unpack_archive(ctx.artifacts.path(ctx.name, version, record["bundle"]), workdir / SITE)
        (workdir / SITE / "config.json").write_text(json.dumps(config))
        shutil.copyfile(SMOKE, workdir / SMOKE_COPY)
        timeout = ctx.spec.gates.smoke.timeout_s
        (workdir / JOB).write_text(json.dumps({
            "site": SITE, "path": settings.page, "upstreams": list(config["upstreams"].values()), "chromium": CHROMIUM,
            "wait_for": settings.wait_for, "timeout_s": timeout, "result": RESULT}))
        task = SandboxTask(deliverable=ctx.name, team=ctx.spec.owner, purpose="smoke",
                           command=[PYTHON, SMOKE_COPY, JOB], workdir=workdir, outputs=(RESULT,),
                           timeout_s=timeout * 3 + 30, redacted_outputs=(RESULT,))
        result = ctx.resources.sandbox.run(task, ctx.step_context)
        if not (workdir / RESULT).is_file():
            return GateResult("smoke", False, f"the browser did not report ({result.exit_code}):\n{result.output}")
        smoke = json.loads((workdir / RESULT).read_text())
    problems = smoke["problems"]
    calls = ", ".join(f"{name} in {env}" for name in config["upstreams"]) or "no upstream"
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        return GateResult("smoke", False, f"{settings.page} in Chromium ({calls}): {shown}", {"problems": problems})
    return GateResult("smoke", True, f"{settings.page} rendered '{smoke['title']}' in Chromium with no console "
                                     f"error ({calls})", {"text": smoke.get("text", "")[:500]})


def _source(ctx: StageContext) -> Path:
    source = resolve_in_folder(ctx.deliverable.path, "webapp.source", ctx.spec.webapp.source)
    if not (source / "package.json").is_file():
        raise BuildFailed(f"{ctx.deliverable.path}: field 'webapp.source': no package.json in {source}")
    if not (source / "package-lock.json").is_file():
        raise BuildFailed(f"{source} has no package-lock.json: run `npm install` there and commit the lockfile "
                          "(builds install exactly what it pins, with `npm ci`)")
    return source
