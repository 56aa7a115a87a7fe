"""The built-in control loops by loop group (each group leads through its own Lease), and
the admission steps and subresource actions that belong with them. Every loop's ``name``
is a value of ``edgek server --disable``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgek.kinds import Kind
from server.apiserver.resources import Action
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
from server.controllers.runtime import Controller, ControllerContext
from server.controllers.serviceaccounts import ServiceAccountController
from server.controllers.statefulset import StatefulSetController
from server.controllers.tainteviction import TaintEvictionController
from server.controllers.ttlafterfinished import TTLAfterFinishedController
from server.controllers.volumebinding import DefaultStorageClass, PersistentVolumeBinder
from server.registry.binding import binding_action
from server.registry.eviction import eviction_action
from server.registry.limitrange import LimitRangeAdmission
from server.registry.quota import QuotaAdmission
from server.registry.store import Undo
from server.registry.tolerations import DefaultTolerationSeconds
from server.scheduler.priority import priority_admission
from server.scheduler.scheduler import Scheduler

Admission = Callable[[Kind, dict[str, Any], dict[str, Any] | None], Undo | None]


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


def admission(ctx: ControllerContext) -> list[Admission]:
    """Admission steps, in order: defaults first (priority, tolerations, LimitRange), then
    the quota that charges the defaulted object. Their caches are created here, so they
    start with the others."""
    return [
        priority_admission(ctx.cache("scheduling.k8s.io", "priorityclasses")),
        DefaultTolerationSeconds(ctx.config),
        DefaultStorageClass(ctx.cache("storage.k8s.io", "storageclasses")),
        LimitRangeAdmission.over(ctx.cache),
        QuotaAdmission.over(ctx.cache, ctx.objects, ctx.clock),
    ]


def actions(ctx: ControllerContext) -> dict[tuple[str, str, str], Action]:
    """POST subresources served outside the generic resource handler."""
    return {
        ("", "pods", "binding"): binding_action(ctx.objects, ctx.kind("", "pods")),
        ("", "pods", "eviction"): eviction_action(ctx.objects, ctx.registry, ctx.clock),
    }
