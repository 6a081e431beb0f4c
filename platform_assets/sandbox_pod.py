"""What a sandbox pod runs (resources/k8s_sandbox.py): fetch the task's folder, run its command,
send the declared outputs and the result back, all through presigned URLs.

Standard library only (child_env.py is too), and no credential: the pod holds nothing but the URLs
the step presigned for this one task (download the inputs, upload the outputs and the result), and
its command gets a minimal environment with only the variables the task declared. The exit code is
a result, not a pod failure, so the pod ends 0 once the result is sent; it ends non-zero only when
the transport itself fails. Run as `python -m platform_assets.sandbox_pod -- <command...>` with the
transport description in the environment variable `SANDBOX_TRANSPORT` (JSON).
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import IO, Any

from platform_assets.child_env import minimal_env

TRANSPORT_ENV = "SANDBOX_TRANSPORT"
TAIL_LINES = 40
_HTTP_TIMEOUT_S = 300


def fetch_inputs(url: str, into: Path) -> None:
    """Download the task's folder (a tar.gz) and unpack it; `data` refuses links and paths outside it."""
    with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT_S) as response, tempfile.TemporaryFile() as tmp:
        while chunk := response.read(1 << 20):
            tmp.write(chunk)
        tmp.seek(0)
        with tarfile.open(fileobj=tmp, mode="r:gz") as archive:
            archive.extractall(into, filter="data")


def put(url: str, body: IO[bytes], length: int, content_type: str) -> None:
    request = urllib.request.Request(url, data=body, method="PUT",
                                     headers={"Content-Length": str(length), "Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT_S):
        pass


def send_outputs(url: str, workdir: Path, outputs: list[str]) -> list[str]:
    """Upload the declared outputs that exist as one tar.gz; returns their names."""
    present = [name for name in outputs if (workdir / name).exists()]
    with tempfile.TemporaryFile() as tmp:
        with tarfile.open(fileobj=tmp, mode="w:gz") as archive:
            for name in present:
                archive.add(workdir / name, arcname=name)
        length = tmp.tell()
        tmp.seek(0)
        put(url, tmp, length, "application/gzip")
    return present


def hider(values: list[str]) -> re.Pattern[str] | None:
    """A pattern of the secret values the pod was given, longest first, so logs never show them."""
    values = sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)
    return re.compile("|".join(re.escape(v) for v in values)) if values else None


def relay(stream: IO[str], kept: collections.deque[str], hidden: re.Pattern[str] | None) -> None:
    """Echo the command's output to the pod log (secrets hidden) and keep its last lines."""
    for line in stream:
        line = hidden.sub("***", line) if hidden else line
        kept.append(line.rstrip("\n"))
        print(line, end="", flush=True)


def run(command: list[str], workdir: Path, env: dict[str, str], timeout_s: float,
        hidden: re.Pattern[str] | None) -> dict[str, Any]:
    """Run `command` in its own process group, stopped with the whole group at the timeout."""
    process = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True, errors="replace", start_new_session=True)
    kept: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    reader = threading.Thread(target=relay, args=(process.stdout, kept, hidden), daemon=True)
    reader.start()
    try:
        exit_code: int | None = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        exit_code = None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # nothing it started outlives it
    process.wait()
    reader.join(timeout=10)
    return {"exit_code": exit_code, "timed_out": exit_code is None, "output": "\n".join(kept)}


def main(argv: list[str]) -> int:
    transport = json.loads(os.environ.pop(TRANSPORT_ENV))
    command = argv[argv.index("--") + 1:] if "--" in argv else argv
    root = Path.cwd()
    workdir, home = root / "work", root / "home"
    for folder in (workdir, home / "tmp"):
        folder.mkdir(parents=True, exist_ok=True)
    hidden = hider([os.environ.get(name, "") for name in transport.get("redact", [])])
    try:
        fetch_inputs(transport["inputs_url"], workdir)
        # What LocalSandbox gives a child: PATH and locale, a HOME of its own and the declared variables;
        # nothing else of the pod's environment (the image's ENV, what Kubernetes injects).
        declared = {name: os.environ[name] for name in transport.get("env", []) if name in os.environ}
        env = minimal_env(home, declared)
        result = run(command, workdir, env, float(transport["timeout_s"]), hidden)
        result["outputs"] = send_outputs(transport["outputs_url"], workdir, list(transport.get("outputs", [])))
        body = json.dumps(result).encode()
        put(transport["result_url"], io.BytesIO(body), len(body), "application/json")
    except (OSError, tarfile.TarError) as exc:  # urllib's errors are OSErrors
        print(f"sandbox transport failed: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
