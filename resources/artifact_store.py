"""Where built artifacts live, addressed by (deliverable, version).

Artifacts are immutable: build once, and every later stage and environment reads the same files.
`LocalArtifactStore` is the embedded default; `S3ArtifactStore` (resources/s3_artifact_store.py)
serves step pods that share no disk.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from abc import abstractmethod
from pathlib import Path
from typing import Any

import dagster as dg

from platform_assets.settings import state_dir


class ArtifactStore(dg.ConfigurableResource):
    """What the stages and handlers need of an artifact store."""

    @abstractmethod
    def location(self) -> str:
        """Where the artifacts are, for people."""

    @abstractmethod
    def path(self, deliverable: str, version: str, filename: str) -> Path:
        """A local file with the artifact's content; FileNotFoundError if it was never stored."""

    @abstractmethod
    def exists(self, deliverable: str, version: str, filename: str) -> bool: ...

    @abstractmethod
    def put_file(self, deliverable: str, version: str, source: Path, filename: str | None = None) -> Path:
        """Store a copy of `source`; return a local file with the stored content."""

    @abstractmethod
    def put_json(self, deliverable: str, version: str, filename: str, data: Any) -> Path | str: ...

    @abstractmethod
    def get_json(self, deliverable: str, version: str, filename: str) -> Any: ...


def atomic_write(target: Path, write: Any, mode: str = "w") -> Path:
    """Write through a temporary file and rename, so readers never see half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(mode, dir=target.parent, delete=False) as tmp:
        write(tmp)
    os.replace(tmp.name, target)
    return target


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True)


class LocalArtifactStore(ArtifactStore):
    """A directory tree `<root>/<deliverable>/<version>/<file>`; root defaults to the state folder."""

    root: str | None = None

    def base(self) -> Path:
        return Path(self.root) if self.root else state_dir() / "artifacts"

    def location(self) -> str:
        return str(self.base())

    def folder(self, deliverable: str, version: str) -> Path:
        return self.base() / deliverable / version

    def path(self, deliverable: str, version: str, filename: str) -> Path:
        path = self.folder(deliverable, version) / filename
        if not path.exists():
            raise FileNotFoundError(f"artifact {deliverable}@{version}/{filename} not found in {self.base()}")
        return path

    def exists(self, deliverable: str, version: str, filename: str) -> bool:
        return (self.folder(deliverable, version) / filename).exists()

    def put_file(self, deliverable: str, version: str, source: Path, filename: str | None = None) -> Path:
        target = self.folder(deliverable, version) / (filename or source.name)
        return atomic_write(target, lambda tmp: shutil.copyfile(source, tmp.name), mode="wb")

    def put_json(self, deliverable: str, version: str, filename: str, data: Any) -> Path:
        return atomic_write(self.folder(deliverable, version) / filename, lambda tmp: tmp.write(to_json(data)))

    def get_json(self, deliverable: str, version: str, filename: str) -> Any:
        return json.loads(self.path(deliverable, version, filename).read_text())
