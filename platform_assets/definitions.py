"""The single code location: `dagster dev`, `dagster asset materialize -m platform_assets.definitions`."""

from platform_assets.code_location import build_definitions
from platform_assets.kinds.model.safety import forbid_unchecked_loads
from platform_assets.process_heap import settle

forbid_unchecked_loads()  # every platform process loads this module: MLflow deserializes no unchecked model
defs = build_definitions()
settle()  # the definitions live as long as the process: the collector need not walk them
