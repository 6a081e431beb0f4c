"""Running a Python project's tests, building its wheel and installing it in isolation.

Everything runs in subprocesses: the platform process never imports the project's code or its
heavy dependencies, and a crashing project cannot take the step down with it.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import venv
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from platform_assets.handlers.base import BuildFailed

INSTALLED_MARKER = ".installed"
_EXPORT_OPENAPI = (
    "import importlib, json, sys\n"
    "module, _, attr = sys.argv[1].partition(':')\n"
    "json.dump(getattr(importlib.import_module(module), attr).openapi(), sys.stdout)\n"
)


class ProjectError(BuildFailed):
    """The project could not be built; the message says which command failed and why."""


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


def _child_env(python_path: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    if python_path is not None:
        env["PYTHONPATH"] = str(python_path)
    return env


def run_tests(
    project: Path, tests: str, python_path: str, timeout_s: float, extra_env: dict[str, str] | None = None
) -> TestReport:
    """Run the project's own pytest suite with the platform's interpreter; never raises on red."""
    junit = project / ".platform-junit.xml"
    if not (project / tests).exists():
        return TestReport(errors=1, failures=[f"tests folder '{tests}' not found in the service source"])
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", tests],
            cwd=project,
            env={**_child_env(project / python_path), **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return TestReport(errors=1, failures=[f"tests did not finish within {timeout_s:.0f}s"])
    report = _parse_junit(junit) if junit.exists() else TestReport(errors=1, failures=["pytest wrote no report"])
    report.output_tail = "\n".join((completed.stdout + completed.stderr).splitlines()[-40:])
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


def build_wheel(project: Path, out_dir: Path) -> Path:
    """Build the project's wheel without network access (no build isolation)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-input", "-q",
          "-w", str(out_dir), str(project)], "building the wheel", cwd=project)
    wheels = sorted(out_dir.glob("*.whl"))
    if len(wheels) != 1:
        raise ProjectError(f"building the wheel produced {len(wheels)} wheels in {out_dir}, expected one")
    return wheels[0]


def export_openapi(project: Path, python_path: str, app: str) -> dict[str, Any]:
    """The OpenAPI contract the project's ASGI app `module:attribute` really serves."""
    output = _run([sys.executable, "-c", _EXPORT_OPENAPI, app], f"exporting the OpenAPI contract of {app}",
                  cwd=project, env=_child_env(project / python_path))
    return json.loads(output)


def install_isolated(wheel: Path, venv_dir: Path) -> Path:
    """Install `wheel` into its own virtual environment; return that environment's python.

    The platform's site-packages is added after the environment's own as a read-only base layer,
    so common runtime dependencies (fastapi, uvicorn) need no network; anything the wheel needs
    beyond them, or in another version, is installed into the isolated environment only.
    """
    python = venv_dir / "bin" / "python"
    if (venv_dir / INSTALLED_MARKER).exists():
        return python
    venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(venv_dir)
    purelib = next((venv_dir / "lib").glob("python*/site-packages"))
    (purelib / "_platform_base.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-input", "-q", str(wheel)],
         f"installing {wheel.name}", cwd=venv_dir)
    (venv_dir / INSTALLED_MARKER).write_text(wheel.name)
    return python


def _run(command: list[str], what: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    completed = subprocess.run(command, cwd=cwd, env=env or _child_env(), capture_output=True, text=True)
    if completed.returncode != 0:
        tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-20:])
        raise ProjectError(f"{what} failed (exit {completed.returncode}):\n{tail}")
    return completed.stdout
