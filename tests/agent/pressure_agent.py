"""``edgek`` whose agent reads its host through a sampler the tests control: while the file
``<agent dir>/memory-pressure`` exists, the host has 50Mi of memory available (below the
100Mi hard threshold), otherwise the real sample. For the eviction end-to-end test; run as
``python -m tests.agent.pressure_agent agent ...``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import agent.main
from agent import host
from agent.nodestatus import HostSample
from edgek.cmd.main import main

#: The file whose presence means memory pressure.
PRESSURE_FILE = "memory-pressure"


def pressured_sample(path: Path) -> HostSample:
    """The host's sample, short of memory while :data:`PRESSURE_FILE` exists in ``path``."""
    sample = host.sample(path)
    if (path / PRESSURE_FILE).exists():
        return dataclasses.replace(sample, memory_available=50 * 2**20)
    return sample


class PressureAgent(agent.main.Agent):
    """The agent, sampling with :func:`pressured_sample`."""

    def __init__(self, config: agent.main.AgentConfig, **kwargs: Any) -> None:
        super().__init__(config, **{**kwargs, "sampler": pressured_sample})


if __name__ == "__main__":
    vars(agent.main)["Agent"] = PressureAgent  # what ``run_cli`` starts
    main()
