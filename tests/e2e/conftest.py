"""End-to-end tests: every test here carries the ``e2e`` marker; fixtures for kubectl bound
to the session server and fresh namespaces."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.hardening import cap_address_space
from tests.e2e.test_bad_input import Api
from tests.helpers import Kubectl, ServerProcess, kubectl_binaries, start_server

_ns_counter = itertools.count()
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/e2e as ``e2e`` (the hook sees the whole session's items,
    so only those collected from this directory are marked)."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)


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


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of the test module's own, its address space capped (hardening tests)."""
    srv = start_server(tmp_path_factory.mktemp("hardening"))
    cap_address_space(srv)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def hard_api(capped: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Api:
    return Api(capped, tmp_path_factory.mktemp("hardening-certs"))


@pytest.fixture
def hard_ns(hard_api: Api) -> str:
    """A fresh namespace."""
    name = f"hard{next(_ns_counter)}"
    hard_api.ok("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    return name
