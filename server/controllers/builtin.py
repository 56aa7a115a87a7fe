"""The built-in control loops by loop group (each group leads through its own Lease).
Every loop's ``name`` is a value of ``edgek server --disable``."""

from __future__ import annotations

from server.config import AGENT_COMPONENTS
from server.controllers.clusterroleaggregation import ClusterRoleAggregationController
from server.controllers.cronjob import CronJobController
from server.controllers.csr import CSRController
from server.controllers.daemonset import DaemonSetController
from server.controllers.deployment import DeploymentController
from server.controllers.disruption import DisruptionController
from server.controllers.endpoints import EndpointsController
from server.controllers.endpointslices import EndpointSliceController
from server.controllers.garbagecollector import GarbageCollector
from server.controllers.job import JobController
from server.controllers.localpath import LocalPathProvisioner
from server.controllers.namespace import NamespaceController
from server.controllers.nodeipam import NodeIpamController
from server.controllers.nodelifecycle import NodeLifecycleController
from server.controllers.replicaset import ReplicaSetController
from server.controllers.resourcequota import ResourceQuotaController
from server.controllers.runtime import Controller
from server.controllers.serviceaccounts import ServiceAccountController
from server.controllers.servicelb import ServiceLBController
from server.controllers.statefulset import StatefulSetController
from server.controllers.tainteviction import TaintEvictionController
from server.controllers.ttlafterfinished import TTLAfterFinishedController
from server.controllers.volumebinding import PersistentVolumeBinder
from server.scheduler.scheduler import Scheduler


def controller_loops() -> list[type[Controller]]:
    """The kube-controller-manager group."""
    return [
        GarbageCollector,
        ReplicaSetController,
        DeploymentController,
        StatefulSetController,
        DaemonSetController,
        JobController,
        CronJobController,
        TTLAfterFinishedController,
        NodeLifecycleController,
        TaintEvictionController,
        NodeIpamController,
        EndpointsController,
        EndpointSliceController,
        ServiceLBController,
        DisruptionController,
        ResourceQuotaController,
        PersistentVolumeBinder,
        LocalPathProvisioner,
        NamespaceController,
        ServiceAccountController,
        CSRController,
        ClusterRoleAggregationController,
    ]


def scheduler_loops() -> list[type[Controller]]:
    """The kube-scheduler group."""
    return [Scheduler]


def check_disable(disable: list[str]) -> None:
    """ValueError when ``--disable`` names a loop that does not exist."""
    known = {loop.name for loop in controller_loops() + scheduler_loops()} | AGENT_COMPONENTS
    unknown = sorted(set(disable) - known)
    if unknown:
        raise ValueError(
            f"unknown --disable value(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
