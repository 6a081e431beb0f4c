"""Run in a process forked from the executor's forkserver (tests/test_step_preload.py): what it found
already imported. Imports nothing itself, so what it reports came from the preload."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

EXPECTED = ("alembic", "dagster._core.storage.runs.sqlite.sqlite_run_storage", "platform_assets.definitions",
            "sqlalchemy")


def loaded() -> dict:
    found = {"modules": sorted(m for m in EXPECTED if m in sys.modules)}
    preload = sys.modules.get("platform_assets.step_preload")  # read, never imported here
    return {**found, "forkserver": preload.in_forkserver() if preload else None}


def send_loaded(connection: Connection) -> None:
    """The child's side: one message, then the connection closes."""
    connection.send(loaded())
    connection.close()
