"""One deploy at a time per (deliverable, environment), held across the whole deploy step.

The lock covers the switch, the health check, an automatic rollback and the record, so two
deploys of one environment (the UI, the CLI and a sensor at once) run one after the other and
the last record names what serves. It is a file lock beside the environment's state: every
process on the machine (runs, `dagster asset materialize`, tests) takes the same one, whatever
the instance's configuration. The holder's run id is written into the file so a waiting deploy
can say what it waits for.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Callable, Iterator
from pathlib import Path


class DeployLockTimeout(Exception):
    """Another deploy of the same environment held the lock for longer than the wait allows."""


@contextlib.contextmanager
def file_lock(path: Path, holder: str, log: Callable[[str], None] | None = None,
              wait_s: float = 3600.0) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                handle.seek(0)
                current = handle.read().strip() or "another deploy"
                if not told and log:
                    log(f"waiting for {current} to finish deploying here ({path.parent.name})")
                    told = True
                if time.monotonic() > deadline:
                    raise DeployLockTimeout(f"{current} has been deploying for over {wait_s:.0f}s; "
                                            f"nothing was changed (lock {path})") from None
                time.sleep(0.25)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(holder)
            handle.flush()
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
