"""Running a notebook with papermill on the platform's Python, and reading back what it did.

`execute` runs inside the sandbox (`runner.py`), never in the platform's process, so the
kernel inherits the sandbox's minimal environment. The kernel is a kernelspec written for each
execution into a folder of its own, naming this process's interpreter: no user-level or system
kernel can stand in for it, and a clean clone needs nothing registered. papermill, nbformat,
nbconvert and jupyter_client are imported inside the functions; this module is imported when the
definitions load.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from platform_assets.fingerprint import source_files

KERNEL_NAME = "platform-python"
OUTPUTS_MIME = "application/vnd.platform.outputs+json"
PARAMETERS_TAG = "parameters"
_ADDED_BY_PAPERMILL = {"injected-parameters", "papermill-error-cell-tag"}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class NotebookError(Exception):
    """The notebook file cannot be used as it is; the message names the file and the fix."""


@dataclass(frozen=True)
class CellFailure:
    """The cell that stopped the run, numbered as the author sees it (1 = the notebook's first cell)."""

    cell: int
    execution_count: int | None
    source: str
    error: str
    message: str
    traceback: str


@dataclass(frozen=True)
class Execution:
    runtime_s: float
    cells: int
    outputs: dict[str, Any]
    failure: CellFailure | None
    slowest_cells: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_notebook(path: Path) -> Any:
    import nbformat

    if not path.is_file():
        raise NotebookError(f"notebook {path} does not exist")
    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # nbformat raises several unrelated types for unreadable files
        raise NotebookError(f"{path} is not a readable Jupyter notebook: {exc}") from exc


def parameter_names(nb: Any, path: Path) -> set[str] | None:
    """Names the cell tagged `parameters` assigns (None when it is not plain Python, e.g. magics)."""
    cells = [c for c in nb.cells if PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise NotebookError(
            f"{path} has no cell tagged '{PARAMETERS_TAG}'; tag the cell that sets the defaults "
            "(JupyterLab: select it, open the property inspector, add the tag 'parameters'), so "
            "the platform can put its parameters after it"
        )
    try:
        tree = ast.parse(cells[0].source)
    except SyntaxError:
        return None
    names: set[str] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def notebook_digest_input(nb: Any) -> bytes:
    """What a notebook's version depends on: its cells' code and tags, not outputs or counters.

    Saving a notebook after running it does not make a new version.
    """
    cells = [{"type": c.cell_type, "source": c.source, "tags": sorted(c.get("metadata", {}).get("tags", []))}
             for c in nb.cells]
    return json.dumps(cells, sort_keys=True).encode()


def folder_digest(folder: Path, extra: dict[str, Any]) -> str:
    """Notebooks by their code, every other source file by its bytes, plus `extra` (parameters, inputs)."""
    digest = hashlib.sha256()
    for path in source_files(folder):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        content = notebook_digest_input(read_notebook(path)) if path.suffix == ".ipynb" else path.read_bytes()
        digest.update(content + b"\0")
    digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:12]


def execute(notebook: Path, output: Path, parameters: dict[str, Any], cell_timeout_s: float) -> Execution:
    """Run `notebook` in its own folder and write the executed copy (with outputs) to `output`.

    A cell that raises or times out is a result, not an exception: the executed notebook shows
    the error and the returned `failure` names the cell. A kernel that cannot start is raised.
    """
    import nbformat
    import papermill
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    output.parent.mkdir(parents=True, exist_ok=True)
    kernels = output.parent / "kernels"
    _write_kernelspec(kernels / KERNEL_NAME)
    manager = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(
        kernel_dirs=[str(kernels)]))
    started = time.monotonic()
    try:
        papermill.execute_notebook(
            str(notebook), str(output), parameters=parameters, cwd=str(notebook.parent), kernel_name=KERNEL_NAME,
            language="python", km=manager, progress_bar=False, execution_timeout=int(max(cell_timeout_s, 1)),
        )
        stopped: Exception | None = None
    except (papermill.PapermillExecutionError, CellTimeoutError, DeadKernelError) as exc:
        stopped = exc
    runtime = time.monotonic() - started
    executed = nbformat.read(output, as_version=4)
    return Execution(
        runtime_s=round(runtime, 3),
        cells=len(_own_cells(executed)),
        outputs=recorded_outputs(executed),
        failure=_failure(executed, stopped),
        slowest_cells=_slowest(executed),
    )


def _write_kernelspec(folder: Path) -> None:
    from ipykernel.kernelspec import write_kernel_spec

    write_kernel_spec(str(folder), overrides={"display_name": f"platform ({sys.executable})"})


def _own_cells(nb: Any) -> list[tuple[int, Any]]:
    """(number as the author sees it, cell) for the cells that came from the author's notebook."""
    own = [c for c in nb.cells if not _ADDED_BY_PAPERMILL & set(c.get("metadata", {}).get("tags", []))]
    return list(enumerate(own, start=1))


def recorded_outputs(nb: Any) -> dict[str, Any]:
    """Values the notebook recorded with `display({OUTPUTS_MIME: {...}}, raw=True)`; later ones win."""
    values: dict[str, Any] = {}
    for _, cell in _own_cells(nb):
        for output in cell.get("outputs", []):
            data = output.get("data", {}).get(OUTPUTS_MIME)
            if isinstance(data, str):
                data = json.loads(data)
            if isinstance(data, dict):
                values.update(data)
    return values


def _failure(nb: Any, stopped: Exception | None) -> CellFailure | None:
    for number, cell in _own_cells(nb):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return CellFailure(number, cell.get("execution_count"), _excerpt(cell.source), output.get("ename", ""),
                                   output.get("evalue", ""), _tail(output.get("traceback", [])))
    if stopped is None:
        return None
    ran = [(n, c) for n, c in _own_cells(nb) if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    number, cell = ran[-1] if ran else (0, None)
    source = _excerpt(cell.source) if cell is not None else ""
    count = cell.get("execution_count") if cell is not None else None
    error = getattr(stopped, "ename", None) or type(stopped).__name__
    return CellFailure(number, count, source, error, getattr(stopped, "evalue", None) or str(stopped), "")


def _excerpt(source: str, lines: int = 12) -> str:
    kept = source.splitlines()
    return "\n".join(kept[:lines]) + (f"\n... ({len(kept) - lines} more lines)" if len(kept) > lines else "")


def _tail(traceback: list[str], lines: int = 20) -> str:
    text = _ANSI.sub("", "\n".join(traceback))
    return "\n".join(text.splitlines()[-lines:])


def _slowest(nb: Any, count: int = 3) -> list[dict[str, Any]]:
    timed = [(n, c.get("metadata", {}).get("papermill", {}).get("duration")) for n, c in _own_cells(nb)]
    ranked = sorted(((n, d) for n, d in timed if d is not None), key=lambda item: -item[1])
    return [{"cell": n, "seconds": round(d, 3)} for n, d in ranked[:count]]


def render_html(executed: Path, target: Path) -> None:
    """The executed notebook as one HTML file; charts are embedded as base64 images."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    target.write_text(body, encoding="utf-8")
