"""Paths a spec names stay inside the deliverable's folder.

A spec is written by its team, and the platform reads, copies and runs what its paths name, so
`model.trainer: ../../other-team/train.py:train` or `service.source: /` must never reach outside
the folder (symlinks included). The catalog rejects such a spec (`escaping_paths`); the stages
resolve paths with `resolve_in_folder`, so a spec changed after loading cannot escape either.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from platform_assets.handlers.base import BuildFailed


def escaping_paths(folder: Path, paths: dict[str, str]) -> dict[str, str]:
    """field -> why its path is not inside `folder`; a path under one already rejected is not repeated."""
    problems: dict[str, str] = {}
    rejected: list[PurePosixPath] = []
    for field, relative in paths.items():
        if any(PurePosixPath(relative).is_relative_to(bad) for bad in rejected):
            continue
        _, problem = _inside(folder, relative)
        if problem:
            problems[field] = problem
            rejected.append(PurePosixPath(relative))
    return problems


def resolve_in_folder(spec_file: Path, field: str, relative: str) -> Path:
    """The path `relative` names inside the spec's folder; BuildFailed names the file and the field."""
    path, problem = _inside(spec_file.parent, relative)
    if problem:
        raise BuildFailed(f"{spec_file}: field '{field}': {problem}")
    return Path(path)


def _inside(folder: Path, relative: str) -> tuple[str, str | None]:
    """The path `relative` names under `folder`, and why it is not inside, if it is not.

    Components are looked at one by one: a path without '..' and without symlinks is inside by
    construction, so only one with either is resolved (realpath walks every folder above, and the
    catalog checks a few paths per spec). The path checked is the one returned.
    """
    if "\0" in relative:
        return "", "contains a NUL byte"
    if os.path.isabs(relative):
        return "", f"'{relative}' is absolute; write it relative to the deliverable's folder ({folder})"
    path = str(folder)
    parts = relative.split("/")
    for index, part in enumerate(parts):
        if part in ("", "."):
            continue
        candidate = os.path.join(path, part)
        if part == ".." or os.path.islink(candidate):
            resolved, base = os.path.realpath(os.path.join(path, *parts[index:])), os.path.realpath(folder)
            if resolved == base or resolved.startswith(base + os.sep):
                return resolved, None
            how = "with '..'" if ".." in parts else "through a symlink"
            return resolved, (f"'{relative}' leads outside the deliverable's folder {how} (to {resolved}); "
                              f"keep it inside {folder}")
        path = candidate
    return path, None
