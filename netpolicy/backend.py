"""The cluster-wide pod network settings the server hands every agent: ``edgek server
--network-backend`` and ``--cluster-cidr``, written by node IPAM as annotations on every
Node (an agent may read its own Node; see :mod:`netpolicy.podnet`)."""

from __future__ import annotations

#: ``--network-backend`` values.
BACKENDS = ("host-gw", "vxlan", "none")
BACKEND_ANNOTATION = "edgek.io/network-backend"
CLUSTER_CIDR_ANNOTATION = "edgek.io/cluster-cidr"
