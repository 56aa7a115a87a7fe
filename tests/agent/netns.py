"""A network namespace with only loopback for tests and benchmarks that start Podman: nothing
in it has a link out of the machine."""

from __future__ import annotations

import ctypes
import itertools
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

_names = itertools.count()
T = TypeVar("T")
#: setns(2)'s namespace type of a network namespace.
CLONE_NEWNET = 0x40000000


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


def run_in_netns(name_prefix: list[str], fn: Callable[[], T]) -> T:
    """Run ``fn`` in a new thread that has entered the namespace of ``name_prefix`` (as
    yielded by :func:`isolated_netns`): every socket it creates lives in that namespace."""
    path = name_prefix[1].removeprefix("--net=")
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            with open(path) as ns:
                _setns(ns.fileno())
            result.append(fn())
        except BaseException as e:  # re-raised in the caller
            errors.append(e)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def _setns(fd: int) -> None:
    """Move this thread into the network namespace open at ``fd``."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


@contextmanager
def inside_isolated_netns() -> Iterator[None]:
    """Move this thread (the test process's main thread: everything it starts, kubectl and
    the servers and agents it runs, inherits it) into a fresh loopback-only namespace, and
    back at the end. For tests that run agents as plain subprocesses: whatever an agent
    programs (routes, iptables) stays in the namespace."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        with isolated_netns() as prefix:
            name = prefix[-1].removeprefix("--net=")
            target = os.open(name, os.O_RDONLY)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                yield
            finally:
                _setns(original)
    finally:
        os.close(original)
