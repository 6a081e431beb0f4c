"""What runs inside the sandbox for a model: `python -m platform_assets.kinds.model.runner train|check`.

The platform prepares the working folder (the current directory): `task.json` and the inputs it
names. `train` imports the deliverable's trainer from its copied folder, calls
`train(features, label, params)` on the train split and saves the estimator with skops to the
declared output. `check` skops-loads a candidate model with the trusted list and predicts the
input example, so a model registered outside the platform is first deserialized here, not there.

It imports no other platform module (no handlers, no Dagster): the child holds nothing the
platform holds and needs none of it. Nothing it writes is trusted: the platform re-checks the
output's types and computes every figure itself. Failures print one `model_runner:` line saying
which part failed, then the traceback, and exit non-zero.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

TASK_FILE = "task.json"


def _fail(what: str) -> None:
    print(f"model_runner: {what}", file=sys.stderr)
    traceback.print_exc()
    raise SystemExit(1)


def load_trainer(source: Path, filename: str, function: str) -> Callable[..., Any]:
    """The trainer function, imported from the copied deliverable folder (its siblings importable)."""
    sys.path.insert(0, str(source))
    spec = importlib.util.spec_from_file_location(Path(filename).stem, source / filename)
    if spec is None or spec.loader is None:
        raise ImportError(f"{filename} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    trainer = getattr(module, function, None)
    if not callable(trainer):
        raise AttributeError(f"{filename} has no function '{function}'")
    return trainer


def train(task: dict[str, Any]) -> None:
    import pandas as pd
    import skops.io

    frame = pd.read_parquet(task["data"])
    label = frame.pop(task["label"])
    try:
        trainer = load_trainer(Path(task["source"]), task["trainer"], task["function"])
    except Exception:
        _fail(f"importing {task['trainer']} failed")
    try:
        estimator = trainer(frame, label, dict(task["params"]))
    except Exception:
        _fail(f"{task['trainer']}:{task['function']}(features, label, params) raised")
    try:
        skops.io.dump(estimator, task["output"])
    except Exception:
        _fail(f"the estimator {type(estimator).__name__} could not be saved with skops")


def check(task: dict[str, Any]) -> None:
    import pandas as pd
    import skops.io

    try:
        model = skops.io.load(task["model"], trusted=list(task["trusted"]))
    except Exception:
        _fail(f"skops could not load {task['model']} with the trusted types {task['trusted']}")
    example = pd.read_parquet(task["example"])
    predict = getattr(model, "predict_proba", None) or model.predict
    try:
        output = predict(example)
    except Exception:
        _fail("the model could not predict the input example")
    if len(output) != len(example):
        print(f"model_runner: {len(output)} predictions for {len(example)} rows", file=sys.stderr)
        raise SystemExit(1)


COMMANDS = {"train": train, "check": check}


def main(argv: list[str]) -> None:
    if len(argv) != 1 or argv[0] not in COMMANDS:
        raise SystemExit(f"usage: python -m platform_assets.kinds.model.runner {{{'|'.join(COMMANDS)}}}")
    COMMANDS[argv[0]](json.loads(Path(TASK_FILE).read_text()))


if __name__ == "__main__":
    main(sys.argv[1:])
