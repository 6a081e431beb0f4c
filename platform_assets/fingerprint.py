"""Content digests of deliverable sources: the version id of everything built from source."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

IGNORED_DIRS = frozenset(
    {"__pycache__", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints", ".venv", ".git", "build", "dist"}
)
IGNORED_FILES = frozenset({"deliverable.yaml"})


def source_files(folder: Path) -> Iterator[Path]:
    """Files that make up a deliverable's source; caches, build output and the spec are not."""
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part in IGNORED_DIRS or part.endswith(".egg-info") for part in rel.parts[:-1]):
            continue
        if path.is_file() and path.name not in IGNORED_FILES and path.suffix != ".pyc":
            yield path


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
