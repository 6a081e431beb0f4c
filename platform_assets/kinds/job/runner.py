"""Runs a batch job's entry point inside the sandbox (run.py copies this file next to the inputs).

Standalone on purpose: it runs on the job's own interpreter, imports only the standard library,
pandas and the job, and never the platform. `python runner.py job.json` reads each input
Parquet file, calls `module:function({table: DataFrame})`, and writes the DataFrame it returns and
a result (rows, column types, or the error and the job's own traceback) for the platform to read.
A failure of the job's code is reported there, with exit status 0.
"""

import importlib
import json
import sys
import time
import traceback
from pathlib import Path


def main(job_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    for entry in reversed(job["python_path"]):
        sys.path.insert(0, str(Path(entry).resolve()))
    Path(job["result"]).parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    result: dict = {}
    try:
        import pandas as pd

        inputs = {table: pd.read_parquet(path) for table, path in job["inputs"].items()}
        module, _, attribute = job["entrypoint"].partition(":")
        output = getattr(importlib.import_module(module), attribute)(inputs)
        if not isinstance(output, pd.DataFrame):
            raise TypeError(f"{job['entrypoint']} returned {type(output).__name__}, not a pandas DataFrame")
        output.to_parquet(job["output"], index=False)
        result = {"rows": len(output), "columns": {str(c): str(t) for c, t in output.dtypes.items()}, "error": None}
    except Exception as exc:  # the job's own failure, whatever it is, is the result
        traceback.print_exc()
        result = {"rows": 0, "columns": {}, "error": f"{type(exc).__name__}: {exc}"}
    result["runtime_s"] = round(time.monotonic() - started, 3)
    Path(job["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
