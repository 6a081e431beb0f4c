"""The web app's build, run inside the sandbox (handler.py copies this file into the source's copy).

`python .platform-build.py job.json` runs, in the project's folder, `npm ci` (lifecycle scripts off:
no dependency's install script runs), the project's test script and its build script, each with
its exit status and last output lines recorded, and stops at the first that fails. Standalone:
the standard library only.
"""

import json
import subprocess
import sys
import time
from pathlib import Path


def main(job_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    steps = []
    for name, command in job["steps"]:
        started = time.monotonic()
        try:
            done = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=job["timeout_s"])
            code, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as exc:
            code, output = None, f"{_text(exc.stdout)}{_text(exc.stderr)}\n(stopped after {job['timeout_s']:.0f}s)"
        except FileNotFoundError as exc:
            code, output = 127, str(exc)
        steps.append({"step": name, "command": " ".join(command), "exit_code": code,
                      "seconds": round(time.monotonic() - started, 3),
                      "output_tail": "\n".join(output.splitlines()[-40:])})
        if code != 0:
            break
    Path(job["result"]).write_text(json.dumps(steps))


def _text(output: bytes | str | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


if __name__ == "__main__":
    main(sys.argv[1])
