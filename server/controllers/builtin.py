"""The built-in control loops, by loop group (each group leads through its own Lease).
Every loop's ``name`` is a value of ``edgek server --disable``."""

from __future__ import annotations

from server.controllers.runtime import Controller


def controller_loops() -> list[type[Controller]]:
    """The kube-controller-manager group."""
    return []


def scheduler_loops() -> list[type[Controller]]:
    """The kube-scheduler group."""
    return []
