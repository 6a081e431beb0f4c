"""Where built artifacts live, addressed by (deliverable, version).

Artifacts are immutable: build once, and every later stage and environment reads the same files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg

from platform_assets.settings import state_dir


class LocalArtifactStore(dg.ConfigurableResource):
    """A directory tree `<root>/<deliverable>/<version>/<file>`; root defaults to the state folder."""

    root: str | None = None

    def base(self) -> Path:
        return Path(self.root) if self.root else state_dir() / "artifacts"

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
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
            shutil.copyfile(source, tmp.name)
        os.replace(tmp.name, target)
        return target

    def put_json(self, deliverable: str, version: str, filename: str, data: Any) -> Path:
        target = self.folder(deliverable, version) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=target.parent, delete=False) as tmp:
            json.dump(data, tmp, indent=2, sort_keys=True)
        os.replace(tmp.name, target)
        return target

    def get_json(self, deliverable: str, version: str, filename: str) -> Any:
        return json.loads(self.path(deliverable, version, filename).read_text())
