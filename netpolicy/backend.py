"""The cluster-wide pod network settings the server hands every agent: ``edgek server
--network-backend`` and ``--cluster-cidr``, written by node IPAM as annotations on every
Node (an agent may read its own Node; see :mod:`netpolicy.podnet`)."""

from __future__ import annotations

#: ``--network-backend`` values.
BACKENDS = ("host-gw", "vxlan", "none")
BACKEND_ANNOTATION = "edgek.io/network-backend"
CLUSTER_CIDR_ANNOTATION = "edgek.io/cluster-cidr"
#: The VXLAN backend: the VNI and UDP port (``--vxlan-vni``, ``--vxlan-port``), and each
#: node's own VTEP MAC (written by its agent).
VXLAN_VNI_ANNOTATION = "edgek.io/vxlan-vni"
VXLAN_PORT_ANNOTATION = "edgek.io/vxlan-port"
VTEP_MAC_ANNOTATION = "edgek.io/vtep-mac"
