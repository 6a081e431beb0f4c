"""Where a deliverable's own code runs: never in the platform's process, never with its credentials.

Tests, build backends, trainers, notebooks and candidate models are untrusted (DESIGN.md, "Trust
boundaries"). A `SandboxTask` says what to run and what it may see: its working folder (a copy of
the source and the inputs its spec declares), the variables and secrets its spec declares, and
nothing else. Locally it runs as a child process with a minimal environment (no DAGSTER_HOME, no
cloud keys, no platform tokens); on Kubernetes as a pod of its own in the team's namespace
(resources/k8s_sandbox.py). Both return the declared outputs in the same folder.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import dagster as dg

from platform_assets.child_env import minimal_env
from platform_assets.secret_store import resolve
from platform_assets.settings import ComputeProfile

PYTHON = "{python}"  # in a command: this interpreter locally, the image's `python` in a pod
_SECRET_MARKERS = ("PASSWORD", "TOKEN", "SECRET", "KEY")


@dataclass(frozen=True)
class SandboxTask:
    """One run of deliverable code. `workdir` is the task's working folder: the sandbox runs the
    command in (a copy of) it and brings the paths in `outputs` back into it."""

    deliverable: str
    team: str
    purpose: str  # what it is, for logs and pod names: tests, wheel, contract, train, notebook, model-check
    command: list[str]
    workdir: Path
    outputs: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)  # declared by the spec (or the platform for this task)
    # Variables read from secrets the spec declares: name -> (secret, key); never the platform's own.
    secret_env: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    profile_name: str = ""
    profile: ComputeProfile | None = None
    timeout_s: float = 600.0
    # Text files among `outputs` that may quote what the code saw (a test report): the sandbox
    # redacts them like the log before handing them back.
    redacted_outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class SandboxResult:
    exit_code: int | None  # None when it was stopped at its timeout
    output: str  # the last lines of stdout and stderr, secrets redacted
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Sandbox(Protocol):
    def run(self, task: SandboxTask, context: Any | None = None) -> SandboxResult:
        """Run `task`; `context` is the Dagster step context where the sandbox needs one (pods)."""
        ...


def redact(text: str, secrets: list[str] | tuple[str, ...]) -> str:
    """`text` with every known secret value replaced, so stored log tails never carry them."""
    for value in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


class LocalSandbox(dg.ConfigurableResource):
    """A child process in its own session with a minimal environment, stopped with its whole
    process group at the timeout (the `sandbox` resource of local execution)."""

    def run(self, task: SandboxTask, context: Any | None = None) -> SandboxResult:
        home = task.workdir / ".sandbox-home"
        secret_values = resolve(task.team, task.secret_env)  # MissingSecret says where to put one
        env = minimal_env(home, {**task.env, **secret_values})
        command = [sys.executable if part == PYTHON else part for part in task.command]
        process = subprocess.Popen(command, cwd=task.workdir, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                   errors="replace", start_new_session=True)
        try:
            output, _ = process.communicate(timeout=task.timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            try:  # a grandchild in a session of its own (a Jupyter kernel) may still hold the pipe
                output, _ = process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                output = ""
            timed_out = True
        hidden = [*secret_values.values(), *secret_values_of(task.env), *platform_secrets()]
        for name in task.redacted_outputs:
            path = task.workdir / name
            if path.is_file():
                path.write_text(redact(path.read_text(errors="replace"), hidden))
        return SandboxResult(None if timed_out else process.returncode, redact(tail(output or ""), hidden),
                             timed_out)


def secret_values_of(env: Mapping[str, str]) -> list[str]:
    """Values of the variables in `env` whose names say they are secret (passwords, tokens, keys)."""
    return [value for name, value in env.items() if any(marker in name.upper() for marker in _SECRET_MARKERS)]


def platform_secrets() -> list[str]:
    """Values of the platform's own secrets present in this process, redacted from any output."""
    return secret_values_of(os.environ)
