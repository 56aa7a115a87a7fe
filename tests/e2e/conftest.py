"""Fixtures for end-to-end tests: kubectl bound to the session server, fresh namespaces."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Kubectl, ServerProcess, kubectl_binaries

_ns_counter = itertools.count()


@pytest.fixture(params=sorted(kubectl_binaries().items()), ids=lambda item: item[0])
def kubectl(request: pytest.FixtureRequest, server: ServerProcess, tmp_path: Path) -> Kubectl:
    """kubectl (each available binary in turn) with a per-test discovery cache."""
    return Kubectl(request.param[1], server.kubeconfig, tmp_path / "cache", request.param[0])


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    """A fresh namespace for one test."""
    name = f"t{next(_ns_counter)}-{kubectl.label}"
    kubectl("create", "namespace", name)
    yield name
