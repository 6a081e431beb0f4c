"""MLflow tracking and model registry, as one resource the model kind uses.

dagster-mlflow's `mlflow_tracking` ties one MLflow run to one Dagster run, with one experiment
per resource config. The platform trains several models per Dagster run (one experiment each),
so it keeps dagster-mlflow's convention (the `dagster_run_id` tag on every run, which is how the
MLflow UI finds what a Dagster run did) and talks to the registry through `MlflowClient`.
mlflow is imported inside the methods: loading the definitions must not pay for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from platform_assets.settings import state_dir

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

EXPERIMENT_PREFIX = "platform/"
FINGERPRINT_TAG = "platform.fingerprint"


class MlflowRegistry(dg.ConfigurableResource):
    """`tracking_uri` unset: `sqlite:///<state>/mlflow/mlflow.db`, artifacts in `<state>/mlflow/artifacts`."""

    tracking_uri: str | None = None
    artifact_location: str | None = None

    def uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        folder = state_dir() / "mlflow"
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'mlflow.db'}"

    def artifact_root(self) -> str:
        return self.artifact_location or str(state_dir() / "mlflow" / "artifacts")

    def client(self) -> MlflowClient:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri(), registry_uri=self.uri())

    def activate(self) -> None:
        """Point mlflow's fluent API (log_model, start_run) at this store; it is process-global."""
        import mlflow

        mlflow.set_tracking_uri(self.uri())
        mlflow.set_registry_uri(self.uri())

    def experiment_id(self, deliverable: str) -> str:
        """One experiment per deliverable, created with the configured artifact location."""
        client = self.client()
        name = EXPERIMENT_PREFIX + deliverable
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = self.artifact_root()
        if "://" not in location:
            Path(location).mkdir(parents=True, exist_ok=True)
            location = Path(location).resolve().as_uri()
        return client.create_experiment(name, artifact_location=f"{location}/{deliverable}")

    def versions(self, name: str) -> list[ModelVersion]:
        from mlflow.exceptions import MlflowException

        try:
            return sorted(self.client().search_model_versions(f"name='{name}'"), key=lambda mv: int(mv.version))
        except MlflowException:
            return []

    def version_with_fingerprint(self, name: str, fingerprint: str) -> str | None:
        """The registered version trained from exactly these inputs, if one exists."""
        for mv in reversed(self.versions(name)):
            if mv.tags.get(FINGERPRINT_TAG) == fingerprint:
                return str(mv.version)
        return None

    def alias_version(self, name: str, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client().get_model_version_by_alias(name, alias).version)
        except MlflowException:
            return None

    def move_alias(self, name: str, alias: str, version: str | None) -> None:
        """Point `alias` at `version`; None removes the alias (nothing was there before)."""
        client = self.client()
        if version is None:
            client.delete_registered_model_alias(name, alias)
        else:
            client.set_registered_model_alias(name, alias, version)

    def tag_version(self, name: str, version: str, tags: dict[str, str]) -> None:
        """Platform outcomes on the model version, so the MLflow UI shows why a version was refused."""
        client = self.client()
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)

    def run_of(self, name: str, version: str) -> Any:
        client = self.client()
        return client.get_run(client.get_model_version(name, version).run_id)

    def server_egress(self) -> tuple[tuple[str | None, int], ...]:
        """Where a model server on Kubernetes must connect: the tracking server (its namespace when
        it is a cluster service) and, for artifacts on S3 or HTTPS, port 443 anywhere."""
        from urllib.parse import urlparse

        rules: list[tuple[str | None, int]] = []
        tracking = urlparse(self.tracking_uri or "")
        if tracking.scheme in ("http", "https") and tracking.hostname:
            parts = tracking.hostname.split(".")
            namespace = parts[1] if len(parts) > 2 and parts[2] == "svc" else None
            rules.append((namespace, tracking.port or (443 if tracking.scheme == "https" else 80)))
        if urlparse(self.artifact_location or "").scheme in ("s3", "https", "gs", "wasbs"):
            rules.append((None, 443))
        return tuple(rules)

    def server_env(self) -> dict[str, str]:
        """What a model server process needs to resolve `models:/...` URIs against this store."""
        return {"MLFLOW_TRACKING_URI": self.uri(), "MLFLOW_REGISTRY_URI": self.uri()}


def main() -> None:
    """`make mlflow-ui`: print the instance's tracking URI and artifact root as the platform resolves
    them (platform.yaml, else the state folder of DAGSTER_HOME), so the UI never opens another store."""
    from platform_assets.settings import load_settings

    config = load_settings().mlflow
    registry = MlflowRegistry(tracking_uri=config.tracking_uri, artifact_location=config.artifact_location)
    print(registry.uri(), registry.artifact_root())


if __name__ == "__main__":
    main()
