"""Loading a registered model without running its code: skops only, trusted types only.

A model file is deliverable code: pickle, cloudpickle and a pyfunc `python_model` run arbitrary
code when loaded. So every place that loads a model (evaluation, adoption, the model server) goes
through `load_checked`, which reads the model's MLmodel file first and loads only the sklearn
flavor in skops format whose recorded trusted types are all in the platform's list
(platform.yaml `models.trusted_types`); skops itself then refuses any type outside the recorded
list. Anything else is refused before a byte of the model is deserialized.

MLflow 3.17's switch MLFLOW_ALLOW_PICKLE_DESERIALIZATION (default true) gates every sklearn
format, skops included. The platform and the model server run with it set to false
(`forbid_unchecked_loads`); `load_checked` opens it only around the one load it has just
checked. mlflow is imported inside the functions: loading definitions must not pay for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

ALLOW_PICKLE_ENV = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
TRUSTED_TYPES_ENV = "PLATFORM_TRUSTED_TYPES"  # a model server's trusted list (JSON), set by the deployer
PREDICT_FUNCTIONS = (None, "predict", "predict_proba")
HOW_TO_LOG = ('mlflow.sklearn.log_model(model, name=..., serialization_format="skops", '
              'skops_trusted_types=[...], signature=..., input_example=...)')


class UnsafeModel(Exception):
    """The model is not stored in a form the platform loads; the message says why."""


def forbid_unchecked_loads() -> None:
    """Make MLflow refuse to deserialize any model in this process unless `load_checked` allows it."""
    os.environ[ALLOW_PICKLE_ENV] = "false"


@contextlib.contextmanager
def deserialization_allowed() -> Iterator[None]:
    """Only around a load of something just checked (here, or a skops file the platform vetted)."""
    os.environ[ALLOW_PICKLE_ENV] = "true"
    try:
        yield
    finally:
        forbid_unchecked_loads()


def model_problems(flavors: Mapping[str, Any], trusted: Collection[str]) -> list[str]:
    """Why an MLmodel's flavors are not safe to load (empty: the sklearn flavor in skops format with
    trusted types within `trusted`, one .skops file, and a pyfunc flavor that only wraps it)."""
    others = sorted(set(flavors) - {"python_function", "sklearn"})
    if others:
        return [f"flavor(s) {', '.join(others)} are not loaded by the platform"]
    sklearn, pyfunc = flavors.get("sklearn"), flavors.get("python_function")
    if not sklearn or not pyfunc:
        return ["it is not a scikit-learn model with a python_function flavor (a pyfunc python_model is "
                "code, and is never loaded)"]
    problems = []
    if sklearn.get("serialization_format") != "skops":
        problems.append(f"it is serialized as {sklearn.get('serialization_format') or 'pickle'}, not skops")
    stored = str(sklearn.get("pickled_model") or "")
    if Path(stored).name != stored or not stored.endswith(".skops") or pyfunc.get("model_path") != stored:
        problems.append(f"its model file '{stored}' is not one .skops file in the model's folder")
    if sklearn.get("code") or pyfunc.get("code"):
        problems.append("it ships code_paths, which would be put on the loader's sys.path")
    if pyfunc.get("loader_module") != "mlflow.sklearn" or pyfunc.get("predict_fn") not in PREDICT_FUNCTIONS:
        problems.append(f"its pyfunc flavor is not the plain sklearn wrapper ({pyfunc.get('loader_module')}, "
                        f"predict_fn {pyfunc.get('predict_fn')})")
    untrusted = sorted(set(sklearn.get("skops_trusted_types") or []) - set(trusted))
    if untrusted:
        problems.append(f"it trusts types the platform does not: {', '.join(untrusted)}")
    return problems


def recorded_trusted_types(flavors: Mapping[str, Any]) -> list[str]:
    return list((flavors.get("sklearn") or {}).get("skops_trusted_types") or [])


def read_flavors(model_uri: str) -> dict[str, Any]:
    """The flavors of a model's MLmodel file; only that one file is downloaded, nothing is loaded."""
    from mlflow.models import Model

    return dict(Model.load(model_uri).flavors)


def check(model_uri: str, flavors: Mapping[str, Any], trusted: Collection[str]) -> None:
    problems = model_problems(flavors, trusted)
    if problems:
        raise UnsafeModel(f"{model_uri} is not loaded: {'; '.join(problems)}")


def download(model_uri: str, destination: Path) -> Path:
    """The model's files in a local folder: what is checked there is exactly what gets loaded."""
    import mlflow

    return Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(destination)))


def load_checked(model_uri: str, folder: Path, trusted: Collection[str]) -> Any:
    """The pyfunc model in `folder` (downloaded from `model_uri`), after its MLmodel passed `check`."""
    import mlflow
    from mlflow.models import Model

    check(model_uri, Model.load(str(folder)).flavors, trusted)
    with deserialization_allowed():
        return mlflow.pyfunc.load_model(str(folder))


def load_version(model_uri: str, trusted: Collection[str]) -> Any:
    """Download, check and load a registered model (evaluation and the model server use this)."""
    with tempfile.TemporaryDirectory(prefix="model-") as tmp:
        return load_checked(model_uri, download(model_uri, Path(tmp)), trusted)


def serving_env(trusted: Collection[str]) -> dict[str, str]:
    """What a model server's deployer puts in its environment: the trusted list, pickle off."""
    return {TRUSTED_TYPES_ENV: json.dumps(sorted(trusted)), ALLOW_PICKLE_ENV: "false"}


def trusted_from_env() -> list[str]:
    """A model server's trusted list; unset means nothing beyond skops' safe defaults."""
    return list(json.loads(os.environ.get(TRUSTED_TYPES_ENV) or "[]"))
