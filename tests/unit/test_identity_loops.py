"""The namespace, service-account, CSR and ClusterRole aggregation loops run in the
kube-controller-manager group: only while this server holds the group's leader Lease,
and each can be switched off with ``--disable``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from server.config import ServerConfig
from server.controllers import builtin
from server.controllers.runtime import ControllerManager, LeaderLease
from server.storage.objectstore import DeleteOptions
from tests.unit.controller_harness import Harness

GROUP = "kube-controller-manager"
NAMES = ("namespace", "serviceaccount", "csrsigning", "clusterrole-aggregation")
CA_PEM = "-----BEGIN CERTIFICATE-----\nnot parsed\n-----END CERTIFICATE-----\n"
RBAC = "rbac.authorization.k8s.io"
PODS_GET = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}


def _loops() -> list[Any]:
    return [cls for cls in builtin.controller_loops() if cls.name in NAMES]


def _config(tmp_path: Path, disable: list[str] | None = None) -> ServerConfig:
    config = ServerConfig(data_dir=tmp_path, disable=disable or [])
    config.tls_dir.mkdir(parents=True, exist_ok=True)
    (config.tls_dir / "server-ca.crt").write_text(CA_PEM)
    return config


def test_loops_are_kube_controller_manager_loops_and_can_be_disabled(
    harness: Harness, tmp_path: Path
) -> None:
    assert sorted(cls.name for cls in _loops()) == sorted(NAMES)
    assert all(cls.manager != "kube-scheduler" for cls in _loops())
    harness.ctx.config = _config(tmp_path, disable=list(NAMES))
    manager = ControllerManager(harness.ctx, builtin.controller_loops(), group=GROUP)
    assert manager.controllers
    assert not {c.name for c in manager.controllers} & set(NAMES)


async def _aggregation_fixture(h: Harness) -> None:
    """An aggregated ClusterRole and one role its selector picks up."""
    selector = {"matchLabels": {"agg": "yes"}}
    roles: list[dict[str, Any]] = [
        {
            "metadata": {"name": "aggregated"},
            "aggregationRule": {"clusterRoleSelectors": [selector]},
        },
        {"metadata": {"name": "part", "labels": {"agg": "yes"}}, "rules": [PODS_GET]},
    ]
    for role in roles:
        body = {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole", **role}
        await h.create(RBAC, "clusterroles", "", body)


async def test_loops_wait_for_the_leader_lease(harness: Harness, tmp_path: Path) -> None:
    h = harness
    h.ctx.config = _config(tmp_path)
    other = LeaderLease(h.ctx, GROUP, "another-server")
    assert await other.try_acquire()
    manager = ControllerManager(h.ctx, _loops(), group=GROUP)
    manager.lease.renew_every = 0.05
    await manager.start()
    try:
        assert not manager.running
        await h.create(
            "",
            "namespaces",
            "",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}},
        )
        await h.create(
            "",
            "configmaps",
            "default",
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
        )
        await h.objects.delete(h.kind("", "namespaces"), "", "default", DeleteOptions())
        await _aggregation_fixture(h)
        await asyncio.sleep(0.3)  # several lease rounds, all lost to the other holder

        assert not manager.running
        assert await h.get("", "serviceaccounts", "a", "default") is None
        assert await h.get("", "configmaps", "a", "kube-root-ca.crt") is None
        terminating = await h.get("", "namespaces", "", "default")
        assert terminating is not None and terminating["metadata"].get("deletionTimestamp")
        assert await h.get("", "configmaps", "default", "c") is not None
        role = await h.get(RBAC, "clusterroles", "", "aggregated")
        assert role is not None and not role.get("rules")

        h.clock.advance(other.duration + 1)  # the other holder stopped renewing
        await h.wait_for(lambda: manager.running, what="taking the lease")

        async def caught_up() -> bool:
            sa = await h.get("", "serviceaccounts", "a", "default")
            cm = await h.get("", "configmaps", "a", "kube-root-ca.crt")
            gone = await h.get("", "namespaces", "", "default")
            role = await h.get(RBAC, "clusterroles", "", "aggregated")
            return (
                sa is not None
                and cm is not None
                and cm["data"] == {"ca.crt": CA_PEM}
                and gone is None
                and role is not None
                and role.get("rules") == [PODS_GET]
            )

        await h.wait_for(caught_up, what="the loops catching up as leader")
    finally:
        await manager.stop()
