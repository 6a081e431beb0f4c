"""Platform configuration and environment, resolved in one place.

Everything that depends on the process environment (where platform.yaml and the catalog live,
where runtime state goes, which execution mode applies) is decided here so that the rest of the
code takes plain values and tests can point the platform anywhere with environment variables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PROJECT_ROOT = Path(__file__).resolve().parent.parent

CONFIG_ENV = "PLATFORM_CONFIG"
CATALOG_ENV = "PLATFORM_CATALOG_DIR"
STATE_ENV = "PLATFORM_STATE_DIR"
MODE_ENV = "PLATFORM_EXECUTION_MODE"
DBT_PROJECT_ENV = "PLATFORM_DBT_PROJECT_DIR"

# `kubernetes` (k8s_job_executor, per-step pods from compute profiles) is added with its executor.
ExecutionMode = Literal["local"]
TargetType = Literal["local"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Environment(_Strict):
    """One step of the promotion path; `target` names how deploys happen there."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")
    target: TargetType = "local"


class Toleration(_Strict):
    key: str
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class ComputeProfile(_Strict):
    """Kubernetes sizing for a step (GPU profiles put `nvidia.com/gpu` in limits)."""

    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)

    @field_validator("requests", "limits", mode="before")
    @classmethod
    def _quantities_as_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return value


class WarehouseConfig(_Strict):
    """`duckdb` (a file in the state folder) or `postgres` (password from an environment variable)."""

    type: Literal["duckdb", "postgres"] = "duckdb"
    path: str | None = None
    host: str = "localhost"
    port: int = 5432
    dbname: str = "warehouse"
    user: str | None = None
    password_env: str = "PLATFORM_PG_PASSWORD"
    sslmode: str = "prefer"

    @model_validator(mode="after")
    def _postgres_needs_user(self) -> WarehouseConfig:
        if self.type == "postgres" and not self.user:
            raise ValueError("warehouse.user: a postgres warehouse needs a user")
        return self


class MlflowConfig(_Strict):
    """Tracking and registry. Unset: SQLite and artifacts under the state folder (the embedded default)."""

    tracking_uri: str | None = None
    artifact_location: str | None = None


class ModelServingConfig(_Strict):
    """Model endpoints require `Authorization: Bearer <token>`; the token comes from this variable."""

    token_env: str = Field(default="PLATFORM_MODEL_TOKEN", pattern=r"^[A-Z_][A-Z0-9_]*$")


class Execution(_Strict):
    mode: ExecutionMode = "local"


class PlatformSettings(_Strict):
    environments: list[Environment]
    execution: Execution = Execution()
    warehouse: WarehouseConfig = WarehouseConfig()
    mlflow: MlflowConfig = MlflowConfig()
    model_serving: ModelServingConfig = ModelServingConfig()
    default_compute: str = "cpu-small"
    compute_profiles: dict[str, ComputeProfile]
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _consistent(self) -> PlatformSettings:
        names = [e.name for e in self.environments]
        if not names:
            raise ValueError("environments: at least one environment is required (e.g. staging, prod)")
        if len(set(names)) != len(names):
            raise ValueError(f"environments: names must be unique, got {names}")
        if self.default_compute not in self.compute_profiles:
            raise ValueError(
                f"default_compute: '{self.default_compute}' is not a profile in compute_profiles "
                f"({', '.join(sorted(self.compute_profiles))})"
            )
        return self

    @property
    def environment_names(self) -> list[str]:
        return [e.name for e in self.environments]

    @property
    def last_environment(self) -> str:
        return self.environments[-1].name

    def previous_environment(self, env: str) -> str | None:
        """The environment a version is promoted from into `env` (None for the first)."""
        names = self.environment_names
        index = names.index(env)
        return names[index - 1] if index else None

    def profile(self, name: str | None) -> ComputeProfile:
        return self.compute_profiles[name or self.default_compute]

    @property
    def execution_mode(self) -> ExecutionMode:
        override = os.environ.get(MODE_ENV)
        if override:
            if override != "local":
                raise SettingsError(f"environment variable {MODE_ENV}: '{override}' is not a mode; valid: local")
            return override  # type: ignore[return-value]
        return self.execution.mode


class SettingsError(Exception):
    """A problem in platform.yaml, phrased for the person who edits it."""


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or PROJECT_ROOT / "platform.yaml").resolve()


def load_settings(path: Path | None = None) -> PlatformSettings:
    path = path or config_path()
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise SettingsError(f"{path}: not found; set {CONFIG_ENV} or create platform.yaml") from exc
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from exc
    try:
        settings = PlatformSettings.model_validate(raw or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in err['loc']) or '(top level)'}': {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"{path}: {problems}") from exc
    return settings.model_copy(update={"source": path})


def catalog_dir(settings: PlatformSettings | None = None) -> Path:
    """`PLATFORM_CATALOG_DIR`, else `catalog/` beside platform.yaml."""
    override = os.environ.get(CATALOG_ENV)
    if override:
        return Path(override).resolve()
    base = settings.source.parent if settings and settings.source else config_path().parent
    return base / "catalog"


def dbt_project_dir() -> Path:
    """`PLATFORM_DBT_PROJECT_DIR`, else the project's own `dbt_project/`."""
    return Path(os.environ.get(DBT_PROJECT_ENV) or PROJECT_ROOT / "dbt_project").resolve()


def state_dir() -> Path:
    """Root of all runtime state of the embedded default (artifacts, deployments, stores).

    Derived from DAGSTER_HOME so two instances never share files or deployments; resolved at
    call time because the run worker, not the definitions loader, is what writes there.
    """
    override = os.environ.get(STATE_ENV)
    if override:
        path = Path(override)
    elif os.environ.get("DAGSTER_HOME"):
        path = Path(os.environ["DAGSTER_HOME"]) / "platform"
    else:
        path = PROJECT_ROOT / ".platform" / "state"
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path

