"""Fixtures for the networking tests: the real-Podman fixtures of the agent's tests."""

from tests.agent.conftest import busybox_tar, needs_podman, short_dirs

__all__ = ["busybox_tar", "needs_podman", "short_dirs"]
