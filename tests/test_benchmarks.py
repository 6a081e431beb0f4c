"""The benchmark's comparison must stay honest: `make bench` times our definitions against a bare
module generated to define exactly the same thing. This checks that generation still succeeds and
matches on the demo catalog (sensors included), so a new kind of definition cannot break the
benchmark unnoticed; the timings themselves are `make bench`'s, never a test's."""

from __future__ import annotations

import sys
from pathlib import Path

from platform_assets.settings import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))

from bench_definitions import prepare_case


def test_the_bare_module_defines_what_the_platform_defines_for_the_demo(tmp_path: Path) -> None:
    case = prepare_case("demo", 5, PROJECT_ROOT / "catalog", tmp_path / "demo", tmp_path / "pycache")

    generated = (case.bare_dir / f"{case.bare_module}.py").read_text()
    assert "@dg.sensor(name='platform_promotion'" in generated and "@dg.asset" in generated
