"""One package per kind: its handler, spec, gates, helpers and `deliver new` template."""
