"""Running a Python project's tests, building its wheel, exporting its contract (installing the wheel:
wheel_install.py).

The project's own code (its tests, its build backend, the app it imports) is untrusted: each step
runs as a sandbox task on a fresh copy of the digested source, seeing only what its spec declares
(`ProjectSandbox`), and hands back its output file. The platform process never imports the
project, and a crashing project cannot take the step down with it.
"""

from __future__ import annotations

import json
import posixpath
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from platform_assets.fingerprint import copy_sources
from platform_assets.handlers.base import BuildFailed, GateResult
from platform_assets.handlers.spec_paths import resolve_in_folder
from platform_assets.sandbox import PYTHON, Sandbox, SandboxResult, SandboxTask
from platform_assets.secret_store import SecretRef, check_variables
from platform_assets.settings import ComputeProfile
from platform_assets.specs import StrictModel

JUNIT = ".platform-junit.xml"
SHOWN = 5  # failing tests named in a gate's summary
WHEELS = "dist"
CONTRACT = "openapi.json"
_EXPORT_OPENAPI = (
    "import importlib, json, sys\n"
    "module, _, attr = sys.argv[1].partition(':')\n"
    "contract = getattr(importlib.import_module(module), attr).openapi()\n"
    "with open(sys.argv[2], 'w') as out:\n"
    "    json.dump(contract, out)\n"
)


class ProjectError(BuildFailed):
    """The project could not be built; the message says which command failed and why."""


@dataclass(frozen=True)
class ProjectSandbox:
    """Where a project's code runs and what it sees: its spec's variables and secrets, nothing of ours."""

    sandbox: Sandbox
    source: Path  # the digested source folder; every task gets its own copy of exactly these files
    scratch: Path  # where the copies go
    deliverable: str
    team: str
    env: Mapping[str, str] = field(default_factory=dict)
    secret_env: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    profile_name: str = ""
    profile: ComputeProfile | None = None
    context: Any = None  # the Dagster step context, for sandboxes that start pods

    def run(self, purpose: str, command: list[str], outputs: tuple[str, ...], timeout_s: float = 600.0,
            env: Mapping[str, str] | None = None, text: bool = True) -> tuple[SandboxResult, Path]:
        """Run `command` on a fresh copy of the source; return its result and that copy (with `outputs`,
        redacted like the log when they are `text`)."""
        workdir = copy_sources(self.source, self.scratch / purpose)
        task = SandboxTask(
            deliverable=self.deliverable, team=self.team, purpose=purpose, command=command, workdir=workdir,
            outputs=outputs, env={**self.env, **(env or {})}, secret_env=self.secret_env,
            profile_name=self.profile_name, profile=self.profile, timeout_s=timeout_s,
            redacted_outputs=outputs if text else (),
        )
        return self.sandbox.run(task, self.context), workdir


@dataclass
class TestReport:
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)
    output_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.errors == 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_tests(project: ProjectSandbox, tests: str, python_path: str, timeout_s: float) -> TestReport:
    """Run the project's own pytest suite; never raises on red."""
    if not (project.source / tests).exists():
        return TestReport(errors=1, failures=[f"tests folder '{tests}' not found in the service source"])
    result, workdir = project.run(
        "tests", [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={JUNIT}", tests],
        (JUNIT,), timeout_s, env={"PYTHONPATH": python_path})
    if result.timed_out:
        report = TestReport(errors=1, failures=[f"tests did not finish within {timeout_s:.0f}s"])
    elif (workdir / JUNIT).exists():
        report = _parse_junit(workdir / JUNIT)
    else:
        report = TestReport(errors=1, failures=["pytest wrote no report"])
    report.output_tail = result.output
    return report


class ProjectSettings(StrictModel):
    """What the spec of a Python project (a service, a batch job) says about its source: where it
    is, its Python path and tests in it, and what its code may see."""

    source: str = "."
    python_path: str = "src"
    tests: str = "tests"
    test_timeout_s: float = Field(default=600.0, gt=0)
    env: dict[str, str] = Field(default_factory=dict)
    # Variable name -> a key of a secret: secretKeyRef on Kubernetes, the local secret store here.
    secrets: dict[str, SecretRef] = Field(default_factory=dict)

    @field_validator("secrets")
    @classmethod
    def _secret_variables(cls, secrets: dict[str, SecretRef], info: ValidationInfo) -> dict[str, SecretRef]:
        check_variables(secrets, info.data.get("env", {}))
        return secrets

    def paths(self, section: str) -> dict[str, str]:
        """The spec fields naming its folders (`spec_paths`), under the kind's `section`."""
        return {f"{section}.source": self.source,
                f"{section}.python_path": posixpath.join(self.source, self.python_path),
                f"{section}.tests": posixpath.join(self.source, self.tests)}


def project_source(deliverable_path: Path, section: str, settings: ProjectSettings) -> Path:
    """The project's source folder, which must exist inside the deliverable's folder."""
    source = resolve_in_folder(deliverable_path, f"{section}.source", settings.source)
    if not source.is_dir():
        raise BuildFailed(f"{deliverable_path}: field '{section}.source': folder {source} does not exist")
    return source


class TestsGate(StrictModel):
    min_passed: int = Field(default=1, ge=0)


def tests_gate(tests: dict[str, Any], minimum: int) -> GateResult:
    """The `tests` gate from a build's test report: all green and at least `minimum` passed
    (gates.tests.min_passed), naming the first failing tests."""
    passed = tests["failed"] == 0 and tests["errors"] == 0 and tests["passed"] >= minimum
    summary = (
        f"{tests['passed']} passed, {tests['failed']} failed, {tests['errors']} errors"
        + ("" if tests["passed"] >= minimum else f"; at least {minimum} must pass (gates.tests.min_passed)")
    )
    if tests["failures"]:
        shown = tests["failures"][:SHOWN]
        more = len(tests["failures"]) - len(shown)
        summary += "; failing: " + "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
    return GateResult("tests", passed, summary, {"failures": tests["failures"]})


def _parse_junit(path: Path) -> TestReport:
    report = TestReport()
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        if outcome is None:
            report.passed += 1
        elif outcome.tag == "skipped":
            report.skipped += 1
        else:
            if outcome.tag == "failure":
                report.failed += 1
            else:
                report.errors += 1
            report.failures.append(f"{name}: {(outcome.get('message') or '').splitlines()[0][:200]}")
    return report


def build_wheel(project: ProjectSandbox, out_dir: Path) -> Path:
    """Build the project's wheel without network access (no build isolation); move it to `out_dir`."""
    result, workdir = project.run(
        "wheel", [PYTHON, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-input", "--no-cache-dir",
                  "-q", "-w", WHEELS, "."], (WHEELS,), text=False)
    _require(result, "building the wheel")
    wheels = sorted((workdir / WHEELS).glob("*.whl"))
    if len(wheels) != 1:
        raise ProjectError(f"building the wheel produced {len(wheels)} wheels, expected one")
    out_dir.mkdir(parents=True, exist_ok=True)
    return wheels[0].replace(out_dir / wheels[0].name)


def export_openapi(project: ProjectSandbox, python_path: str, app: str) -> dict[str, Any]:
    """The OpenAPI contract the project's ASGI app `module:attribute` really serves."""
    result, workdir = project.run("contract", [PYTHON, "-c", _EXPORT_OPENAPI, app, CONTRACT], (CONTRACT,),
                                  env={"PYTHONPATH": python_path})
    _require(result, f"exporting the OpenAPI contract of {app}")
    return json.loads((workdir / CONTRACT).read_text())


def _require(result: SandboxResult, what: str) -> None:
    if result.timed_out:
        raise ProjectError(f"{what} did not finish in time:\n{result.output}")
    if not result.ok:
        raise ProjectError(f"{what} failed (exit {result.exit_code}):\n{result.output}")
