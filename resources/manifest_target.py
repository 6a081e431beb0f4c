"""Deploy targets that run workloads as Kubernetes manifests: applied directly or through GitOps.

Both render the same manifests (resources/k8s_manifests.py); they differ only in how the
manifests reach the cluster, which is what `ship` implements.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import dagster as dg

from platform_assets.settings import state_dir
from resources.deploy_lock import file_lock
from resources.deploy_target import Workload
from resources.k8s_manifests import Manifest, RenderContext, render


class ManifestTarget(dg.ConfigurableResource):
    """One environment of a cluster: `namespace` may hold `{team}` (and `{env}`) placeholders."""

    environment: str
    namespace: str
    registry: str
    run_as_user: int = 10001

    def lock(self, deliverable: str, holder: str,
             log: Callable[[str], None] | None = None) -> contextlib.AbstractContextManager[None]:
        """Held by a whole deploy step: a file lock in the state folder, which serialises the deploys
        that share it (the steps of one machine or one volume); see docs/platform-operator.md."""
        return file_lock(state_dir() / "locks" / self.environment / f"{deliverable}.lock", holder, log)

    def namespace_for(self, workload: Workload) -> str:
        return self.namespace.format(team=workload.team, env=self.environment)

    def image_for(self, workload: Workload) -> str:
        """The immutable image of this version: `<registry>/<deliverable>:<version>` unless given."""
        return workload.image or f"{self.registry.rstrip('/')}/{workload.deliverable}:{workload.version}"

    def render(self, workload: Workload) -> list[Manifest]:
        ctx = RenderContext(environment=self.environment, namespace=self.namespace_for(workload),
                            image=self.image_for(workload), run_as_user=self.run_as_user)
        return render(workload, ctx)

    def deploy_workload(self, workload: Workload) -> dict[str, Any]:
        """Ship `workload`; raise DeployFailed (environment unchanged) if it does not come up."""
        manifests = self.render(workload)
        return {"version": workload.version, "workload": workload.deliverable, "image": self.image_for(workload),
                "namespace": self.namespace_for(workload), "port": workload.port, **self.ship(workload, manifests)}

    @abstractmethod
    def ship(self, workload: Workload, manifests: list[Manifest]) -> dict[str, Any]:
        """Get the manifests to the cluster; return what the deploy materialization records."""

    @abstractmethod
    def verify(self, deployment: dict[str, Any]) -> tuple[bool, str]:
        """Post-deploy verification for the `healthy` check."""
