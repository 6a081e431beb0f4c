"""What every kind shares: the handler interface and the tooling several kinds use. The registry of
kinds is platform_assets/kinds/registry.py, apart, so a kind's handler importing these modules never
imports the registry (which imports every handler)."""
