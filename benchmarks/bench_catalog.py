"""Writes a synthetic catalog of service deliverables, shaped like a real one at scale.

~10 teams, ~30% of deliverables with one `depends_on` on an earlier deliverable (so there are no
cycles), a mix of compute profiles. Seeded, so every run loads the same catalog. Owners must be
teams of the registry, so `teams_file(root)` is written beside the catalog: point
PLATFORM_TEAMS_FILE at it.
"""

import random
from pathlib import Path

TEAMS = 10
DEPENDENCY_SHARE = 0.3
COMPUTE_CHOICES = (None, None, "cpu-small", "cpu-large")


def deliverable_name(index: int) -> str:
    return f"svc-{index:04d}"


def spec_yaml(index: int, rng: random.Random) -> str:
    """One valid service spec; deliverable `index` may depend on one with a smaller index."""
    name = deliverable_name(index)
    lines = [
        f"name: {name}",
        "kind: service",
        f"owner: team-{rng.randrange(TEAMS):02d}",
        f"description: Synthetic service {index}",
    ]
    if index and rng.random() < DEPENDENCY_SHARE:
        lines.append(f"depends_on: [{deliverable_name(rng.randrange(index))}]")
    compute = rng.choice(COMPUTE_CHOICES)
    if compute:
        lines.append(f"compute: {compute}")
    lines += ["service:", f"  app: {name.replace('-', '_')}.app:app"]
    return "\n".join(lines) + "\n"


def teams_file(root: Path) -> Path:
    """The teams registry of the catalog in `root`, beside it (the catalog holds deliverables only)."""
    return root.with_name(f"{root.name}-teams.yaml")


def teams_yaml() -> str:
    """A registry with the owners `team-00` .. `team-NN` (one member each) and a platform team."""
    lines = ["platform_team: platform", "teams:", "  platform: {members: [operator]}"]
    lines += [f"  team-{team:02d}: {{members: [member-{team:02d}]}}" for team in range(TEAMS)]
    lines += ["members:", "  operator: {}"] + [f"  member-{team:02d}: {{}}" for team in range(TEAMS)]
    return "\n".join(lines) + "\n"


def write_catalog(root: Path, count: int, seed: int = 20240601) -> Path:
    """`count` deliverables under `root/<name>/deliverable.yaml` and `teams_file(root)`; returns `root`."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    teams_file(root).write_text(teams_yaml())
    for index in range(count):
        folder = root / deliverable_name(index)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "deliverable.yaml").write_text(spec_yaml(index, rng))
    return root
