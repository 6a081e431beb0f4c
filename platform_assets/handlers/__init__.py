"""Registry of kind handlers. Handler modules import nothing heavy at module level."""

from __future__ import annotations

from platform_assets.handlers.base import KindHandler
from platform_assets.handlers.dataset import DatasetHandler
from platform_assets.handlers.model import ModelHandler
from platform_assets.handlers.notebook import NotebookHandler
from platform_assets.handlers.service import ServiceHandler
from platform_assets.specs import DeliverableSpec

HANDLERS: dict[str, KindHandler] = {
    handler.kind: handler for handler in (ServiceHandler(), DatasetHandler(), ModelHandler(), NotebookHandler())
}


def get_handler(kind: str) -> KindHandler:
    return HANDLERS[kind]


def spec_models() -> dict[str, type[DeliverableSpec]]:
    return {kind: handler.spec_model for kind, handler in HANDLERS.items()}
