"""What the sandbox runs for a notebook build: `python -m platform_assets.kinds.notebook.runner JOB`.

The notebook is deliverable code, so papermill runs here, in the sandbox's child process, and the
kernel it starts inherits only that process's minimal environment: no DAGSTER_HOME, no warehouse
password, no cloud keys. JOB (a JSON file in the task's folder) names the notebook, the executed
copy to write, the parameters and the cell timeout; the result (what `execute` returns, and the
kernel's interpreter) is written beside the executed copy for the platform to read back.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from platform_assets.kinds.notebook.run import execute


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    run = execute(Path(job["notebook"]).resolve(), Path(job["output"]).resolve(), job["parameters"],
                  job["cell_timeout_s"])
    Path(job["result"]).write_text(json.dumps({**run.as_dict(), "python": sys.executable}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
