"""Registry of kind handlers. Handler modules import nothing heavy at module level.

The built-in kinds are registered here; a kind of one's own is a module holding a `KindHandler`
subclass, named in platform.yaml `kinds:` (`package.module:HandlerClass`) and registered when
the catalog is loaded, so every process that loads the catalog (run workers, step processes,
`deliver`, the UI's code location) knows it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from platform_assets.handlers.base import KindHandler
from platform_assets.kinds.dataset.handler import DatasetHandler
from platform_assets.kinds.job.handler import JobHandler
from platform_assets.kinds.model.handler import ModelHandler
from platform_assets.kinds.notebook.handler import NotebookHandler
from platform_assets.kinds.service.handler import ServiceHandler
from platform_assets.kinds.webapp.handler import WebappHandler
from platform_assets.specs import DeliverableSpec
from resources.k8s_manifests import register_renderer

HANDLERS: dict[str, KindHandler] = {}


def _add(handler: KindHandler) -> None:
    """The kind, and the Kubernetes shapes it brings (resources/k8s_manifests.py `RENDERERS`)."""
    for workload_kind, renderer in handler.workload_renderers.items():
        register_renderer(workload_kind, renderer)
    HANDLERS[handler.kind] = handler


for _builtin in (ServiceHandler(), DatasetHandler(), ModelHandler(), NotebookHandler(), JobHandler(),
                 WebappHandler()):
    _add(_builtin)


def get_handler(kind: str) -> KindHandler:
    return HANDLERS[kind]


def spec_models() -> dict[str, type[DeliverableSpec]]:
    return {kind: handler.spec_model for kind, handler in HANDLERS.items()}


def register_kinds(paths: Iterable[str]) -> list[tuple[str, str]]:
    """Import and register each `package.module:HandlerClass` (the same class again is a no-op);
    (field, problem) for each that cannot be: the other kinds still load."""
    problems = []
    for index, path in enumerate(paths):
        problem = _register(path)
        if problem:
            problems.append((f"kinds[{index}]", problem))
    return problems


def _register(path: str) -> str | None:
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        return f"'{path}' is not an import path; write package.module:HandlerClass"
    try:
        handler_class = getattr(importlib.import_module(module_name), attribute)
    except Exception as exc:  # whatever a plugin's import raises is one catalog error, not a failed load
        return (f"cannot import '{path}' ({type(exc).__name__}: {exc}); install the package that holds it in "
                "the platform's environment, or fix the module")
    if not (isinstance(handler_class, type) and issubclass(handler_class, KindHandler)):
        return f"'{path}' is not a KindHandler subclass (platform_assets/handlers/base.py)"
    registered = HANDLERS.get(handler_class.kind)
    if registered is not None and type(registered) is not handler_class:
        return (f"kind '{handler_class.kind}' is already {type(registered).__module__}.{type(registered).__name__}; "
                "give the new kind another `kind` name")
    if registered is None:
        try:
            _add(handler_class())
        except ValueError as exc:  # a workload kind another kind renders already
            return f"'{path}': {exc}"
    return None
