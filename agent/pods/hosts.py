"""The ``/etc/hosts`` the kubelet writes for a pod on the pod network and mounts into each
of its containers: the localhost lines, the pod's IPs with its hostname (fully qualified
as ``<hostname>.<subdomain>.<namespace>.svc.<cluster domain>`` when the pod has a
``subdomain``) and the ``hostAliases`` section.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.podconfig.volumes import Mount
from agent.pods.spec import pod_hostname

#: Where the managed file is mounted in each container.
HOSTS_PATH = "/etc/hosts"
#: The cluster's DNS domain when the agent runs no cluster DNS (AgentConfig's default).
CLUSTER_DOMAIN = "cluster.local"

_HEADER = (
    "# Kubernetes-managed hosts file.\n"
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)


def hosts_content(
    pod: Mapping[str, Any], pod_ips: Sequence[str], cluster_domain: str = CLUSTER_DOMAIN
) -> str:
    """The managed hosts file of ``pod`` with addresses ``pod_ips``."""
    spec, namespace = pod.get("spec") or {}, pod["metadata"].get("namespace") or "default"
    hostname = pod_hostname(pod)
    names = hostname
    if spec.get("subdomain"):
        names = f"{hostname}.{spec['subdomain']}.{namespace}.svc.{cluster_domain}\t{hostname}"
    lines = [_HEADER, *(f"{ip}\t{names}\n" for ip in pod_ips)]
    aliases = spec.get("hostAliases") or []
    if aliases:
        lines.append("\n# Entries added by HostAliases.\n")
        lines.extend(
            f"{alias.get('ip', '')}\t{chr(9).join(alias.get('hostnames') or [])}\n"
            for alias in aliases
        )
    return "".join(lines)


def write_hosts(path: Path, content: str) -> None:
    """Write ``content`` to ``path`` in place (a running container's bind mount of the file
    keeps seeing it), unless it is already there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.read_text() == content:
            return
    except FileNotFoundError:
        pass
    with path.open("w") as f:
        f.write(content)
    path.chmod(0o644)


def wants_hosts_file(
    pod: Mapping[str, Any], mounts: Sequence[Mount], pod_ips: Sequence[str]
) -> bool:
    """Whether a container of ``pod`` gets the managed hosts file: on the pod network, with
    an address, and when no volume is mounted at ``/etc/hosts`` already."""
    if (pod.get("spec") or {}).get("hostNetwork") or not pod_ips:
        return False
    return all(m.destination != HOSTS_PATH for m in mounts)
