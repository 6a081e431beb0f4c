"""Errors users cause through the CLI, importable without Dagster (`deliver validate` stays light)."""


class ActionRefused(Exception):
    """An action on a delivery is not allowed; the message says why and what would be."""
