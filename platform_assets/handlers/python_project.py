"""Running a Python project's tests, building its wheel, exporting its contract (installing the wheel:
wheel_install.py).

The project's own code (its tests, its build backend, the app it imports) is untrusted: each step
runs as a sandbox task on a fresh copy of the digested source, seeing only what its spec declares
(`ProjectSandbox`), and hands back its output file. The platform process never imports the
project, and a crashing project cannot take the step down with it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from platform_assets.fingerprint import copy_sources
from platform_assets.handlers.base import BuildFailed
from platform_assets.sandbox import PYTHON, Sandbox, SandboxResult, SandboxTask
from platform_assets.settings import ComputeProfile

JUNIT = ".platform-junit.xml"
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
