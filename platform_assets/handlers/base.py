"""The interface between the shared stages and the kind-specific work.

The stages (platform_assets/stages.py) own everything that is the same for every kind: reading
the version to act on from the event log, recording versions, turning gate results into asset
checks and deploy failures into failed steps. A handler only does what differs per kind.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from platform_assets.settings import PlatformSettings
from platform_assets.specs import Deliverable, DeliverableSpec

if TYPE_CHECKING:
    from dagster import AssetKey, AssetsDefinition, Definitions

    from resources.artifact_store import ArtifactStore
    from resources.deploy_target import DeployTarget


BUILD_RECORD = "build.json"


class BuildFailed(Exception):
    """The deliverable could not be built; the message says what to fix (file, field, command)."""


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    summary: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Deployed:
    """What an environment runs, as recorded by its latest materialization."""

    version: str
    metadata: dict[str, Any]
    recorded_at: float | None = None  # when the record was written (None outside the event log)


@dataclass
class StageContext:
    deliverable: Deliverable
    settings: PlatformSettings
    artifacts: ArtifactStore
    log: logging.Logger
    deployed: Callable[[str], Deployed | None]
    deployed_of: Callable[[str, str], Deployed | None] = lambda name, env: None
    resources: Any = None
    run_id: str | None = None
    platform_image: str | None = None  # the code location's image, when the run has one (Kubernetes)
    run_tags: dict[str, str] = field(default_factory=dict)  # what asked for this run (sensors tag their requests)
    upstream_versions: dict[str, str] = field(default_factory=dict)
    step_context: Any = None  # the Dagster step context, for a sandbox that runs deliverable code in pods

    @property
    def spec(self) -> Any:
        return self.deliverable.spec

    @property
    def name(self) -> str:
        return self.deliverable.name

    def build_record(self, version: str) -> dict[str, Any] | None:
        """What the build of `version` recorded beside its artifact (None if never built)."""
        if not self.artifacts.exists(self.name, version, BUILD_RECORD):
            return None
        return self.artifacts.get_json(self.name, version, BUILD_RECORD)


class KindHandler(ABC):
    """One per kind. Adding a kind means writing one of these, not touching the pipeline."""

    kind: ClassVar[str]
    technology: ClassVar[str]
    spec_model: ClassVar[type[DeliverableSpec]]
    gates: ClassVar[tuple[str, ...]]
    resources: ClassVar[frozenset[str]] = frozenset()
    pool: ClassVar[str | None] = None
    # Whether its steps read or write the warehouse (see `step_pool`).
    warehouse_pool: ClassVar[bool] = False
    # Whether its deploys keep running (a process, a Deployment) that the runtime sensor watches.
    serves: ClassVar[bool] = False
    # Whether its version follows the files of its folder (the source sensor redelivers on a change).
    follows_sources: ClassVar[bool] = False
    # Whether versions made outside the platform (registered in MLflow) are delivered too: the
    # registrations sensor and `deliver adopt` build them with `adoption_tags`.
    adopts: ClassVar[bool] = False
    # The check on each environment asset whose latest evaluation `deliver status` shows as what
    # happens there, for kinds that neither serve nor publish once (a batch job's `scheduled_run`).
    status_check: ClassVar[str | None] = None
    # Whether what it serves is compared with its training data (the `drift` check per environment).
    watches_drift: ClassVar[bool] = False
    # The folder `deliver new <kind> NAME` copies into the catalog (a built-in kind's `template/` beside
    # its handler; scaffold.py: `{{name}}`,
    # `{{package}}` and `{{owner}}` are replaced in file contents, `__package__` in paths); None: no template.
    template: ClassVar[Path | None] = None
    # Kubernetes shapes of its own, by the `Workload.kind` its `workload()` returns (render functions
    # of resources/k8s_manifests.py's signature); `service` (Deployment, Service, HPA) is everyone's.
    workload_renderers: ClassVar[Mapping[str, Callable[..., Any]]] = {}

    def retrains_on_drift(self, spec: Any) -> bool:
        """Whether a failed `drift` check rebuilds it (the drift sensor)."""
        return False

    def data_max_age_hours(self, spec: Any) -> float | None:
        """How old the data its last environment serves may get (a freshness check), if the spec says."""
        return None

    def publishes_on_schedule(self, spec: Any) -> bool:
        """Whether its last environment must be republished on its `schedule` (the report_schedule check)."""
        return False

    def step_pool(self, settings: PlatformSettings) -> str | None:
        """The concurrency pool of this kind's steps under `settings`: `duckdb` for kinds that read or
        write the warehouse (`warehouse_pool`) while it is a DuckDB file, whose one writer per file is
        a DuckDB limit (PostgreSQL runs them in parallel); otherwise `pool`."""
        if self.warehouse_pool and settings.warehouse.type == "duckdb":
            return "duckdb"
        return self.pool

    def build_deps(self, deliverable: Deliverable) -> list[AssetKey]:
        """Assets outside the catalog that a build reads (lineage only, e.g. dbt models)."""
        return []

    def kind_assets(
        self, deliverables: list[Deliverable], settings: PlatformSettings, team: str | None = None
    ) -> tuple[list[AssetsDefinition], list[str]]:
        """Assets the kind adds once for all its deliverables, and problems that kept some out.

        `deliverables` are all of the kind in the catalog; with `team` (one code location per team)
        only the assets that team's location holds, each held by exactly one location, and only the
        problems of that team's deliverables."""
        return [], []

    def kind_definitions(self, deliverables: list[Deliverable], settings: PlatformSettings) -> Definitions | None:
        """Checks, jobs and schedules the kind adds for its deliverables (a batch job's scheduled runs),
        merged into the code location; None: nothing."""
        return None

    def spec_paths(self, spec: Any) -> dict[str, str]:
        """Each spec field naming a file or folder (field -> path relative to the spec's folder).

        The catalog rejects a spec whose paths lead outside its folder: the platform reads, copies
        and runs what they name.
        """
        return {}

    def claims(self, deliverable: Deliverable, settings: PlatformSettings) -> dict[str, str]:
        """What only one deliverable may hold (claim -> the field making it), e.g. a dbt model it
        publishes; the catalog rejects every spec claiming something another one claims too."""
        return {}

    def adoption_tags(self, version: str) -> dict[str, str] | None:
        """Run tags that make a build adopt `version`, made outside the platform, instead of building
        (`deliver adopt`); None: the kind builds everything it delivers itself."""
        return None

    def build_failed(self, ctx: StageContext, version: str | None, reason: str) -> str | None:
        """Record a failed build where the kind's users look (the platform records it in Dagster
        itself) and return the version it was for, when the kind knows one the platform did not."""
        return version

    @abstractmethod
    def version(self, ctx: StageContext) -> str | None:
        """The id of what a build would produce, computed without building it.

        None when the id is assigned by building (an MLflow model version): the build's record
        then says it.
        """

    @abstractmethod
    def build(self, ctx: StageContext, version: str | None) -> dict[str, Any]:
        """Produce the immutable artifact; return the record stored beside it, with its `version`."""

    @abstractmethod
    def build_metadata(self, record: dict[str, Any]) -> dict[str, Any]:
        """What the build materialization shows of a record (fresh or reused)."""

    def reusable(self, ctx: StageContext, record: dict[str, Any]) -> bool:
        """Whether an earlier build of this version is still intact and can be reused."""
        return True

    @abstractmethod
    def evaluate(self, ctx: StageContext, version: str, record: dict[str, Any]) -> list[GateResult]:
        """Return one result per name in `gates`."""

    def evaluation_metadata(self, gates: list[GateResult]) -> dict[str, Any]:
        """Extra metadata on the evaluate materialization (e.g. plots), from the gates' results."""
        return {}

    @abstractmethod
    def deploy(
        self, ctx: StageContext, version: str, record: dict[str, Any], target: DeployTarget
    ) -> dict[str, Any]:
        """Run `version` in the target's environment; raise DeployFailed, leaving the previous one."""

    @abstractmethod
    def verify(self, ctx: StageContext, deployment: dict[str, Any], target: DeployTarget) -> GateResult:
        """Post-deploy verification: the `healthy` check of an environment asset (a spec's `slo:` is
        verified on top of it by platform_assets/slo.py, for every kind that serves)."""

    def smoke_headers(self, ctx: StageContext, deployment: dict[str, Any]) -> dict[str, str]:
        """Headers the smoke requests of the spec's `slo:` carry (a model's bearer token)."""
        return {}
