"""Where rendered reports are published, per environment: a local folder by default.

Every version is stored once under its own name and never changed; the environment's `current`
pointer is switched to it in one atomic step, so readers see the old report or the new one,
never half of one. The previous versions stay, so rolling back is publishing one of them again.

`ReportStore` is what the notebook handler relies on; another backend (S3: versioned keys plus a
`current` object written last) implements the same four methods.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import dagster as dg

from platform_assets.settings import state_dir

REPORT_FILE = "index.html"
CURRENT = "current"
INFO = "report.json"


class ReportStore(Protocol):
    def publish(self, env: str, deliverable: str, version: str, html: Path) -> dict[str, Any]:
        """Store `html` as `version` (once) and make it current; return what `current` then returns."""

    def current(self, env: str, deliverable: str) -> dict[str, Any] | None:
        """The published report: version, sha256, url, path (None if nothing was published)."""

    def read(self, env: str, deliverable: str, version: str) -> bytes:
        """The stored bytes of one version's report (FileNotFoundError if it was never stored)."""

    def versions(self, env: str, deliverable: str) -> list[str]:
        """Every version stored for rollback, oldest first."""


class LocalReportStore(dg.ConfigurableResource):
    """`<root>/<env>/<deliverable>/<version>/index.html`, `current` a symlink to one version folder.

    The stable address `<root>/<env>/<deliverable>/current/index.html` always shows what is
    published; each version's own address never changes. Root defaults to `<state>/reports`.
    """

    root: str | None = None

    def base(self) -> Path:
        return Path(self.root) if self.root else state_dir() / "reports"

    def slot(self, env: str, deliverable: str) -> Path:
        return self.base() / env / deliverable

    def publish(self, env: str, deliverable: str, version: str, html: Path) -> dict[str, Any]:
        slot = self.slot(env, deliverable)
        folder = slot / version
        if not (folder / INFO).exists():
            _store(html, folder, version)
        link = slot / f".{CURRENT}.{os.getpid()}"
        link.unlink(missing_ok=True)
        link.symlink_to(version, target_is_directory=True)
        os.replace(link, slot / CURRENT)
        published = self.current(env, deliverable)
        assert published is not None
        return published

    def current(self, env: str, deliverable: str) -> dict[str, Any] | None:
        pointer = self.slot(env, deliverable) / CURRENT
        if not pointer.is_symlink():
            return None
        return self._describe(env, deliverable, os.readlink(pointer))

    def read(self, env: str, deliverable: str, version: str) -> bytes:
        return (self.slot(env, deliverable) / version / REPORT_FILE).read_bytes()

    def versions(self, env: str, deliverable: str) -> list[str]:
        slot = self.slot(env, deliverable)
        stored = [p / INFO for p in (slot.iterdir() if slot.is_dir() else []) if _version_folder(p)]
        infos = [json.loads(info.read_text()) for info in stored if info.exists()]
        return [info["version"] for info in sorted(infos, key=lambda info: info["stored_at"])]

    def _describe(self, env: str, deliverable: str, version: str) -> dict[str, Any]:
        slot = self.slot(env, deliverable)
        info = json.loads((slot / version / INFO).read_text())
        path = slot / version / REPORT_FILE
        return {**info, "path": str(path), "url": path.as_uri(),
                "current_url": (slot / CURRENT / REPORT_FILE).as_uri()}


def _version_folder(path: Path) -> bool:
    """Not the `current` link, nor a version still being written (a hidden folder)."""
    return path.is_dir() and not path.is_symlink() and not path.name.startswith(".")


def _store(html: Path, folder: Path, version: str) -> None:
    """Write the version folder beside its final name, then rename it: never seen half-written."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{version}."))
    staging.chmod(0o755)
    shutil.copyfile(html, staging / REPORT_FILE)
    info = {"version": version, "sha256": hashlib.sha256((staging / REPORT_FILE).read_bytes()).hexdigest(),
            "stored_at": datetime.now(UTC).isoformat(timespec="microseconds")}
    (staging / INFO).write_text(json.dumps(info, indent=2))
    try:
        staging.rename(folder)
    except OSError:  # another publish of the same version won the race; its copy is identical
        shutil.rmtree(staging, ignore_errors=True)
