"""Session-wide fixtures: one real edgek server in a subprocess (helpers in helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import ServerProcess, start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server shared by the tests of a session (tests use their own namespaces)."""
    srv = start_server(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()
