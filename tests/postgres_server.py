"""A throw-away PostgreSQL server for tests, from the Debian packages (scripts/install-test-deps.sh).

It runs in its own temporary data folder on a free port, with password authentication, and is
stopped and deleted afterwards. PostgreSQL refuses to run as root, so under root the server
runs as the `postgres` user the Debian package creates."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from resources.deploy_target import free_port

INSTALL_HINT = "PostgreSQL is not installed: run scripts/install-test-deps.sh (Debian package postgresql)"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    dbname: str


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
                                       None)
    if not found:
        raise RuntimeError(INSTALL_HINT)
    return found


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def running_postgres(dbname: str = "warehouse") -> Iterator[PostgresServer]:
    folder = Path(tempfile.mkdtemp(prefix="platform-pg-"))
    data, password = folder / "data", "test-only-secret"
    (folder / "pwfile").write_text(password + "\n")
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        for path in (folder, folder / "pwfile"):
            os.chown(path, account.pw_uid, account.pw_gid)
    port = free_port()
    run = lambda command: subprocess.run(_as_server_user(command), check=True, capture_output=True, text=True)  # noqa: E731
    run([_binary("initdb"), "-D", str(data), "-U", "platform", "--auth=scram-sha-256",
         f"--pwfile={folder / 'pwfile'}", "--no-sync"])
    run([_binary("pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "start", "-o",
         f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"])
    try:
        subprocess.run([_binary("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "platform", dbname],
                       check=True, capture_output=True, env={**os.environ, "PGPASSWORD": password})
        yield PostgresServer("127.0.0.1", port, "platform", password, dbname)
    finally:
        subprocess.run(_as_server_user([_binary("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
