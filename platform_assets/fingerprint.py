"""Content digests of deliverable sources: the version id of everything built from source."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

IGNORED_DIRS = frozenset(
    {"__pycache__", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints", ".venv", ".git", "build", "dist",
     "node_modules"}
)
IGNORED_FILES = frozenset({"deliverable.yaml"})


def source_files(folder: Path) -> Iterator[Path]:
    """Files that make up a deliverable's source; caches, build output and the spec are not."""
    found = []
    for root, dirs, files in os.walk(folder):  # ignored folders are not entered (node_modules is large)
        dirs[:] = [d for d in dirs if d not in IGNORED_DIRS and not d.endswith(".egg-info")]
        found += [Path(root, name) for name in files if name not in IGNORED_FILES and not name.endswith(".pyc")]
    yield from sorted(path for path in found if path.is_file())


def source_digest(folder: Path, length: int = 12) -> str:
    """Same files and bytes, same digest, wherever the folder sits."""
    digest = hashlib.sha256()
    for path in source_files(folder):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:length]


def copy_sources(source: Path, destination: Path) -> Path:
    """Copy only the fingerprinted files, so what is built is exactly what was digested."""
    for path in source_files(source):
        target = destination / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return destination
