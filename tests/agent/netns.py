"""A network namespace with only loopback for tests and benchmarks that start Podman: nothing
in it has a link out of the machine."""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

_names = itertools.count()


@contextmanager
def isolated_netns() -> Iterator[list[str]]:
    """Create the namespace, bring loopback up; yields the ``nsenter`` prefix that enters it
    (``ip netns exec`` would remount /sys and hide the cgroups). Deleted at the end."""
    name = f"edgek-rt{os.getpid()}-{next(_names)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield ["nsenter", f"--net=/run/netns/{name}"]
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)
