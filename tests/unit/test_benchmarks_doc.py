"""docs/BENCHMARKS.md holds one section with one table for every benchmark in tests/bench and
for the zipapp build (``packaging/build.py``, whose sizes and start times are measured)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "BENCHMARKS.md"
COLUMNS = "| measured | command | machine | date | figure | floor (same run) | ratio | target |"


def sections() -> dict[str, str]:
    """The document's ``## `` sections by heading."""
    parts = re.split(r"^## (.+)$", DOC.read_text(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_benchmark_has_one_section_with_one_table() -> None:
    benches = sorted(p.name for p in (REPO / "tests" / "bench").glob("bench_*.py"))
    benches.append("packaging/build.py")
    found = sections()
    for bench in benches:
        named = [heading for heading in found if f"`{bench}`" in heading]
        assert len(named) == 1, f"{bench}: sections {named}"
        assert found[named[0]].count(COLUMNS) == 1, f"{bench}: not exactly one table"
    assert len(found) == len(benches), f"sections without a benchmark: {sorted(found)}"
