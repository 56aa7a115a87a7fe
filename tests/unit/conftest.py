"""Unit-test fixtures: the control-loop bench."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.unit.controller_harness import Harness


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """A fresh control-loop bench over a real SQLite datastore (closed afterwards)."""
    h = await Harness.open(tmp_path)
    yield h
    await h.close()
