"""Platform configuration and environment, resolved in one place.

Everything that depends on the process environment (where platform.yaml and the catalog live,
where runtime state goes, which execution mode applies) is decided here so that the rest of the
code takes plain values and tests can point the platform anywhere with environment variables.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from platform_assets.specs import cron

PROJECT_ROOT = Path(__file__).resolve().parent.parent

CONFIG_ENV = "PLATFORM_CONFIG"
CATALOG_ENV = "PLATFORM_CATALOG_DIR"
STATE_ENV = "PLATFORM_STATE_DIR"
MODE_ENV = "PLATFORM_EXECUTION_MODE"
DBT_PROJECT_ENV = "PLATFORM_DBT_PROJECT_DIR"
TEAMS_ENV = "PLATFORM_TEAMS_FILE"
IDENTITY_MODE_ENV = "PLATFORM_IDENTITY_MODE"

ExecutionMode = Literal["local", "kubernetes"]
EXECUTION_MODES: tuple[str, ...] = ("local", "kubernetes")
TargetType = Literal["local", "kubernetes", "gitops"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Environment(_Strict):
    """One step of the promotion path; `target` names how deploys happen there.

    `kubernetes` applies manifests to a cluster, `gitops` commits them to a repository folder that
    Argo CD or Flux syncs. Both need a namespace (`{team}` and `{env}` are filled in per deliverable)
    and the registry the images are pushed to; gitops also needs the repository folder.
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")
    target: TargetType = "local"
    namespace: str | None = Field(default=None, pattern=r"^[a-z0-9{}-]{1,63}$")
    registry: str | None = None
    gitops_repo: str | None = None
    gitops_push: bool = False
    rollout_timeout_s: float = Field(default=600.0, gt=0)
    # The local gateway's port: every deliverable of this environment is served at
    # http://127.0.0.1:<gateway_port>/<name>. Unset: a free port chosen once and kept in the state folder.
    gateway_port: int | None = Field(default=None, ge=1024, le=65535)

    @model_validator(mode="after")
    def _target_settings(self) -> Environment:
        where = f"environments[{self.name}]"
        if self.target == "local":
            return self
        if not self.namespace:
            raise ValueError(f"{where}.namespace: a {self.target} target needs a namespace, "
                             f"e.g. namespace: '{{team}}-{self.name}'")
        if not self.registry:
            raise ValueError(f"{where}.registry: a {self.target} target needs the image registry, "
                             "e.g. registry: registry.example.com/delivery")
        if self.target == "gitops" and not self.gitops_repo:
            raise ValueError(f"{where}.gitops_repo: a gitops target needs the folder of the repository "
                             "Argo CD or Flux watches, e.g. gitops_repo: /srv/gitops")
        return self

    def namespace_for(self, team: str) -> str:
        """The namespace a team's workloads run in here (one per team and environment)."""
        return (self.namespace or "").format(team=team, env=self.name)


class Toleration(_Strict):
    key: str
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_SUFFIX = {"m": Decimal("0.001"), "": Decimal(1), "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9),
           "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18), "Ki": Decimal(2**10),
           "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40), "Pi": Decimal(2**50),
           "Ei": Decimal(2**60)}


def parse_quantity(value: str) -> Decimal:
    """A Kubernetes resource quantity ("250m", "1Gi", "2") as a number; ValueError if it is not one."""
    match = _QUANTITY.match(value)
    if not match:
        raise ValueError(f"'{value}' is not a Kubernetes quantity (e.g. 250m, 2, 512Mi, 8Gi)")
    return Decimal(match.group(1)) * _SUFFIX[match.group(2) or ""]


class ComputeProfile(_Strict):
    """Kubernetes sizing for a step or workload (GPU profiles put `nvidia.com/gpu` in limits).

    `priority_class` and `pool` (a Dagster concurrency pool) let GPU work be scheduled first and
    counted against a cluster-wide limit of concurrent GPU steps.
    """

    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    priority_class: str | None = None
    pool: str | None = None

    @field_validator("requests", "limits", mode="before")
    @classmethod
    def _quantities_as_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _valid_quantities(self) -> ComputeProfile:
        for section in ("requests", "limits"):
            for resource, quantity in getattr(self, section).items():
                try:
                    parse_quantity(quantity)
                except ValueError as exc:
                    raise ValueError(f"{section}.{resource}: {exc}") from None
        for resource, request in self.requests.items():
            limit = self.limits.get(resource)
            if limit is not None and parse_quantity(request) > parse_quantity(limit):
                raise ValueError(f"requests.{resource} ({request}) is above limits.{resource} ({limit}); "
                                 "raise the limit or lower the request")
        for resource in self.gpu_resources:
            if resource in self.requests and self.requests[resource] != self.limits.get(resource):
                raise ValueError(f"{resource}: GPUs cannot be overcommitted; set it in limits only "
                                 "(Kubernetes then requests the same number)")
        return self

    @property
    def gpu_resources(self) -> list[str]:
        """Extended GPU resources (`nvidia.com/gpu`, `amd.com/gpu`) this profile asks for."""
        return sorted(k for k in {*self.requests, *self.limits} if k.endswith("/gpu"))

    @property
    def is_gpu(self) -> bool:
        return bool(self.gpu_resources)

    def container_resources(self) -> dict[str, dict[str, str]]:
        """The container `resources` block (empty sections left out)."""
        return {section: dict(values) for section, values in (("requests", self.requests), ("limits", self.limits))
                if values}

    def pod_scheduling(self) -> dict[str, Any]:
        """Where the pod may run (camelCase PodSpec fields; dagster-k8s takes them as they are)."""
        spec: dict[str, Any] = {}
        if self.node_selector:
            spec["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            spec["tolerations"] = [t.model_dump(exclude_none=True) for t in self.tolerations]
        if self.priority_class:
            spec["priorityClassName"] = self.priority_class
        return spec


class WarehouseConfig(_Strict):
    """`duckdb` (a file in the state folder) or `postgres` (password from an environment variable).

    `namespace`: datasets publish into `<environment>_<owning team>` (`team`) or
    `<environment>_<dataset>` (`dataset`), so two teams' same-named tables never collide."""

    type: Literal["duckdb", "postgres"] = "duckdb"
    namespace: Literal["team", "dataset"] = "team"
    path: str | None = None
    lock_wait_s: float = Field(default=1800.0, gt=0)  # duckdb: how long a step waits for the file's one writer
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
    """Model endpoints require `Authorization: Bearer <token>`, one token per (model, environment)
    derived from the master in `token_env` (platform_assets/model_token.py)."""

    token_env: str = Field(default="PLATFORM_MODEL_TOKEN", pattern=r"^[A-Z_][A-Z0-9_]*$")
    # On Kubernetes a model server and its callers read their pair's token from this Secret (key
    # `token`) in their own namespace, never from a manifest; `{model}` and `{env}` are filled in.
    token_secret: str = Field(default="model-token-{model}-{env}", pattern=r"^[a-z0-9][-a-z0-9{}]*[a-z0-9}]$")
    # Image that runs platform_assets.kinds.model.server on Kubernetes; unset: the code location's image.
    image: str | None = None
    # Secrets whose keys become the server's environment (artifact store credentials, for instance).
    env_secrets: list[str] = Field(default_factory=list)

    @field_validator("token_secret")
    @classmethod
    def _one_secret_per_pair(cls, value: str) -> str:
        if "{model}" not in value or "{env}" not in value:
            raise ValueError(f"'{value}' must contain {{model}} and {{env}}: every (model, environment) has "
                             "its own token, e.g. model-token-{model}-{env}")
        return value


TypeName = Annotated[str, Field(pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")]


class ModelsConfig(_Strict):
    """What the platform trusts a model file to contain, beyond skops' safe defaults.

    Every model is stored in skops format, which loads only the types it is told to trust. Builds,
    adoptions, evaluations and model servers refuse a model that needs a type outside this list;
    a spec's `model.trusted_types` may only name types from it (docs/ml-engineer.md, "Safety").
    """

    trusted_types: list[TypeName] = Field(default_factory=list)
    # When the `drift` check of every served model runs (cron, UTC): platform_assets/kinds/model/drift_check.py.
    drift_schedule: Annotated[str, AfterValidator(cron)] = "*/30 * * * *"


class ArtifactsConfig(_Strict):
    """`local` (a folder in the state folder) or `s3` (credentials only from the AWS environment)."""

    section: ClassVar[str] = "artifacts"
    type: Literal["local", "s3"] = "local"
    path: str | None = None
    bucket: str | None = None
    prefix: str = "artifacts"
    endpoint_url: str | None = None
    region: str | None = None

    @model_validator(mode="after")
    def _s3_needs_bucket(self) -> ArtifactsConfig:
        if self.type == "s3" and not self.bucket:
            raise ValueError(f"{self.section}.bucket: an s3 {self.section} store needs a bucket, "
                             f"e.g. bucket: delivery-{self.section}")
        return self


class ReportsConfig(ArtifactsConfig):
    """Where notebook reports are published: `local` (the state folder) or `s3`; `public_url` is
    what readers open instead of `s3://` links (a CDN or static site in front of the bucket)."""

    section: ClassVar[str] = "reports"
    prefix: str = "reports"
    public_url: str | None = None


class KubernetesExecution(_Strict):
    """Settings of the one `k8s_job_executor` the definitions get in `kubernetes` mode."""

    job_namespace: str = "dagster"
    # Environment variable holding the step image; unset: the code location's own image (Helm sets it).
    job_image_env: str | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    # Build and evaluate steps: may launch and watch sandbox Jobs in the team build namespaces, nothing else.
    service_account_name: str = "dagster-steps"
    # Deploy steps alone: the right to apply workloads in the team deploy namespaces.
    deployer_service_account_name: str = "dagster-deployer"
    env_secrets: list[str] = Field(default_factory=list)
    env_config_maps: list[str] = Field(default_factory=list)
    max_concurrent: int = Field(default=8, ge=1)
    gpu_steps_per_run: int = Field(default=1, ge=1)
    run_as_user: int = Field(default=10001, ge=1)
    # Deliverable code runs in pods of its own (resources/k8s_sandbox.py): `{team}` is filled in.
    sandbox_namespace: str = Field(default="{team}-builds", pattern=r"^[a-z0-9{}-]{1,63}$")
    sandbox_service_account: str = Field(default="{team}-builder", pattern=r"^[a-z0-9{}-]{1,63}$")
    # Image of sandbox pods; unset: the code location's image (it holds the platform's pod entry).
    sandbox_image: str | None = None
    # Time a sandbox pod may take to be scheduled and start, on top of its task's own timeout.
    sandbox_start_timeout_s: int = Field(default=600, ge=10)


class AutomationConfig(_Strict):
    """How often the platform's sensors look for work (the daemon runs them)."""

    sensor_interval_s: int = Field(default=30, ge=1, le=3600)
    # The source sensor compares names, sizes and mtimes only (a file is read when they change), so
    # it can look far more often than the others. The daemon evaluates sensors every 5 s at most:
    # the default 1 means at each of its passes.
    source_interval_s: int = Field(default=1, ge=1, le=3600)


class RuntimeConfig(_Strict):
    """How the runtime sensor supervises what runs (docs/platform-operator.md, "Supervision").

    A dead local process is restarted at once, then after `backoff_s`, twice that, ... (at most
    `backoff_max_s`); after `max_restarts` restarts within `restart_window_s` it is left `down`
    until the next deploy. The `live` check is recorded when a state changes and, for what exposes
    `/-/metrics`, every `record_every_s` with the request figures since the previous record.
    """

    max_restarts: int = Field(default=3, ge=0, le=100)
    restart_window_s: int = Field(default=600, ge=10)
    backoff_s: float = Field(default=5.0, ge=0)
    backoff_max_s: float = Field(default=120.0, ge=0)
    record_every_s: int = Field(default=300, ge=1)
    probe_timeout_s: float = Field(default=2.0, gt=0, le=30)
    # How long a deploy waits for the requests in flight to the old version before stopping it.
    drain_timeout_s: float = Field(default=30.0, ge=0, le=600)


IdentityMode = Literal["os-user", "verified"]
IDENTITY_MODES: tuple[str, ...] = ("os-user", "verified")


class IdentityConfig(_Strict):
    """How the platform knows who asks for an action (docs/platform-operator.md, "Identity and permissions").

    `os-user` (the embedded default): the person is the OS user who runs the CLI or the webserver;
    a convenience for one machine, not a security boundary. `verified`: UI launches carry the
    identity the authenticating proxy puts in `header`, CLI actions are signed with the person's
    SSH key listed in the teams registry, and a deploy without a verified requester is refused.
    """

    mode: IdentityMode = "os-user"
    header: str = Field(default="X-Forwarded-Email", pattern=r"^[A-Za-z0-9-]+$")
    teams_file: str = "teams.yaml"  # relative to platform.yaml
    # HMAC key of the platform's own attestations (run requesters, approvals recorded by the platform);
    # unset: generated into <state>/secrets/identity-key (the embedded default).
    key_env: str = Field(default="PLATFORM_IDENTITY_KEY", pattern=r"^[A-Z_][A-Z0-9_]*$")
    # A signed CLI request is good for this long after it was signed, and for one run.
    request_max_age_s: int = Field(default=900, ge=10, le=86400)
    # Where `deliver` submits runs (the webserver's GraphQL); overridden by PLATFORM_WEBSERVER_URL.
    webserver_url: str = "http://127.0.0.1:3000"


class Execution(_Strict):
    mode: ExecutionMode = "local"
    kubernetes: KubernetesExecution = KubernetesExecution()
    # `local` mode: each step a child of a forkserver that imported the code location once per run
    # (`forkserver`), or a fresh interpreter that imports Dagster and loads it again (`spawn`).
    local_start_method: Literal["forkserver", "spawn"] = "forkserver"
    # A run whose steps can only run one after another (one deliverable's stages) runs them in its
    # own process (local_executor.py); false gives every step a process of its own.
    local_chain_in_run: bool = True


class PlatformSettings(_Strict):
    environments: list[Environment]
    execution: Execution = Execution()
    warehouse: WarehouseConfig = WarehouseConfig()
    mlflow: MlflowConfig = MlflowConfig()
    model_serving: ModelServingConfig = ModelServingConfig()
    models: ModelsConfig = ModelsConfig()
    artifacts: ArtifactsConfig = ArtifactsConfig()
    reports: ReportsConfig = ReportsConfig()
    automation: AutomationConfig = AutomationConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    identity: IdentityConfig = IdentityConfig()
    default_compute: str = "cpu-small"
    compute_profiles: dict[str, ComputeProfile]
    # Kinds beyond the built-in ones: `package.module:HandlerClass` import paths (kinds/registry.py).
    kinds: list[str] = Field(default_factory=list)
    # `single`: one code location for the whole catalog; `per_team`: one per team of the registry
    # (workspace.py), each loading only its team's deliverables.
    code_locations: Literal["single", "per_team"] = "single"
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _consistent(self) -> PlatformSettings:
        names = [e.name for e in self.environments]
        if not names:
            raise ValueError("environments: at least one environment is required (e.g. staging, prod)")
        if len(set(names)) != len(names):
            raise ValueError(f"environments: names must be unique, got {names}")
        ports = [e.gateway_port for e in self.environments if e.gateway_port is not None]
        if len(set(ports)) != len(ports):
            raise ValueError(f"environments: each gateway_port must be different, got {ports}")
        if self.default_compute not in self.compute_profiles:
            raise ValueError(
                f"default_compute: '{self.default_compute}' is not a profile in compute_profiles "
                f"({', '.join(sorted(self.compute_profiles))})"
            )
        if self.compute_profiles[self.default_compute].is_gpu:
            raise ValueError(f"default_compute: '{self.default_compute}' is a GPU profile; evaluate and deploy "
                             "steps run on it, so name a CPU profile")
        return self

    def environment(self, name: str) -> Environment:
        return next(e for e in self.environments if e.name == name)

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
        return _mode(MODE_ENV, EXECUTION_MODES, self.execution.mode)  # type: ignore[return-value]

    @property
    def identity_mode(self) -> IdentityMode:
        return _mode(IDENTITY_MODE_ENV, IDENTITY_MODES, self.identity.mode)  # type: ignore[return-value]


def _mode(variable: str, valid: tuple[str, ...], configured: str) -> str:
    """A mode from platform.yaml unless the environment variable overrides it (checked by name)."""
    override = os.environ.get(variable)
    if override and override not in valid:
        raise SettingsError(f"environment variable {variable}: '{override}' is not a mode; valid: {', '.join(valid)}")
    return override or configured


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


def teams_path(settings: PlatformSettings | None = None) -> Path:
    """`PLATFORM_TEAMS_FILE`, else `identity.teams_file` beside platform.yaml."""
    override = os.environ.get(TEAMS_ENV)
    if override:
        return Path(override).resolve()
    base = settings.source.parent if settings and settings.source else config_path().parent
    return (base / (settings.identity.teams_file if settings else "teams.yaml")).resolve()


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

