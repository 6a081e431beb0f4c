"""The model kind's untrusted steps, run through the `sandbox` resource, and the checks of what
comes back.

Training imports the deliverable's train.py, and checking a candidate registered outside the
platform deserializes it: both are deliverable code (DESIGN.md, "Trust boundaries"), so both run
in a child (a pod on Kubernetes) holding no credential, on a folder the platform prepared, with
`platform_assets/kinds/model/runner.py` as the entry point. The child's output is a skops file; the
platform accepts it only if every type it needs is trusted (`trusted_types`), and computes every
figure itself.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from platform_assets.compute import step_compute
from platform_assets.fingerprint import copy_sources
from platform_assets.handlers.base import BuildFailed, StageContext
from platform_assets.sandbox import PYTHON, SandboxResult, SandboxTask

if TYPE_CHECKING:
    import pandas as pd

TASK_FILE = "task.json"  # runner.TASK_FILE; not imported, the runner is the child's module
TRAIN_DATA = "train.parquet"
EXAMPLE = "example.parquet"
MODEL_FILE = "model.skops"
SOURCE = "src"
CHECK_TIMEOUT_S = 300.0


def _config(ctx: StageContext) -> str:
    return str(ctx.settings.source or "platform.yaml")


def trusted_types(ctx: StageContext) -> list[str]:
    """The types this deliverable's models may contain beyond skops' defaults: the spec's
    `model.trusted_types`, each of which must be in the platform's list, or that list itself."""
    platform, spec = ctx.settings.models.trusted_types, ctx.spec.model.trusted_types
    outside = sorted(set(spec) - set(platform))
    if outside:
        raise BuildFailed(
            f"{ctx.deliverable.path}: field 'model.trusted_types': {', '.join(outside)} is not trusted by the "
            f"platform ({_config(ctx)}: field 'models.trusted_types' lists {', '.join(platform) or 'nothing'}). "
            "Remove it, or ask the platform team to review it and add it there.")
    return list(spec or platform)


def untrusted_problem(ctx: StageContext, found: list[str], trusted: list[str]) -> str | None:
    """What to review when a model needs types outside `trusted`, naming the field to change."""
    outside = sorted(set(found) - set(trusted))
    if not outside:
        return None
    platform = set(ctx.settings.models.trusted_types)
    review = [t for t in outside if t not in platform]
    fix = (f"build it from trusted types, or ask the platform team to review {', '.join(review)} for "
           f"{_config(ctx)}: field 'models.trusted_types'"
           if review else f"list them in {ctx.deliverable.path}: field 'model.trusted_types'")
    return f"the model contains types outside the trusted list: {', '.join(outside)}; {fix}"


def load_skops(ctx: StageContext, file: Path) -> tuple[Any, list[str]]:
    """The estimator in a skops file the child wrote, and the non-default types it needed: its
    types are read without loading it, and it is loaded only if they are all trusted."""
    import skops.io

    found = sorted(skops.io.get_untrusted_types(file=file))
    problem = untrusted_problem(ctx, found, trusted_types(ctx))
    if problem:
        raise BuildFailed(f"{ctx.deliverable.path}: field 'model.trainer' ({ctx.spec.model.trainer}): {problem}")
    try:
        return skops.io.load(file, trusted=found), found
    except Exception as exc:
        raise BuildFailed(f"{ctx.deliverable.path}: field 'model.trainer': the saved model does not load: "
                          f"{exc!r}") from exc


def train_in_sandbox(ctx: StageContext, features: pd.DataFrame, label: pd.Series) -> tuple[Any, list[str]]:
    """Run `train(features, label, params)` in the sandbox on the deliverable's compute profile and
    load the estimator it saved (see `load_skops`)."""
    from platform_assets.kinds.model.training import trainer_source

    settings = ctx.spec.model
    source, function = trainer_source(ctx.deliverable.path, settings.trainer)
    with tempfile.TemporaryDirectory(prefix=f"train-{ctx.name}-") as tmp:
        workdir = Path(tmp)
        copy_sources(ctx.deliverable.folder, workdir / SOURCE)
        features.assign(**{settings.label: label}).to_parquet(workdir / TRAIN_DATA)
        task = {"source": SOURCE, "trainer": str(source.relative_to(ctx.deliverable.folder)), "function": function,
                "data": TRAIN_DATA, "label": settings.label, "params": settings.params, "output": MODEL_FILE}
        result = _run(ctx, "train", workdir, task, step_compute(ctx.spec, "build", ctx.settings),
                      settings.train_timeout_s)
        if not result.ok or not (workdir / MODEL_FILE).is_file():
            raise BuildFailed(f"{ctx.deliverable.path}: field 'model.trainer': {settings.trainer} failed in the "
                              f"sandbox ({_why(result, 'model.train_timeout_s')}); its last lines:\n{result.output}")
        return load_skops(ctx, workdir / MODEL_FILE)


def check_in_sandbox(ctx: StageContext, what: str, model_file: Path, trusted: list[str],
                     example: pd.DataFrame) -> None:
    """skops-load a candidate with `trusted` and predict `example` in the sandbox, before the
    platform deserializes it; BuildFailed with the child's last lines if it cannot."""
    if not model_file.is_file():
        raise BuildFailed(f"{what} has no model file {model_file.name}")
    with tempfile.TemporaryDirectory(prefix=f"check-{ctx.name}-") as tmp:
        workdir = Path(tmp)
        shutil.copyfile(model_file, workdir / MODEL_FILE)
        example.to_parquet(workdir / EXAMPLE)
        task = {"model": MODEL_FILE, "trusted": trusted, "example": EXAMPLE}
        result = _run(ctx, "check", workdir, task, ctx.settings.default_compute, CHECK_TIMEOUT_S)
    if not result.ok:
        raise BuildFailed(f"{what} did not load and predict its input example in the sandbox "
                          f"({_why(result, None)}), so the platform does not load it; its last lines:\n"
                          f"{result.output}")


def _run(ctx: StageContext, command: str, workdir: Path, task: dict[str, Any], profile: str,
         timeout_s: float) -> SandboxResult:
    (workdir / TASK_FILE).write_text(json.dumps(task))
    outputs = (MODEL_FILE,) if command == "train" else ()
    return ctx.resources.sandbox.run(SandboxTask(
        deliverable=ctx.name, team=ctx.spec.owner, purpose="train" if command == "train" else "model-check",
        command=[PYTHON, "-m", "platform_assets.kinds.model.runner", command], workdir=workdir, outputs=outputs,
        profile_name=profile, profile=ctx.settings.profile(profile), timeout_s=timeout_s), ctx.step_context)


def _why(result: SandboxResult, timeout_field: str | None) -> str:
    if result.timed_out:
        return "stopped at its time limit" + (f", field '{timeout_field}'" if timeout_field else "")
    return f"exit code {result.exit_code}" if not result.ok else "it wrote no model file"
