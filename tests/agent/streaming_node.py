"""A node for the streaming tests, run as a process inside the test's network namespace:
an :class:`agent.main.Agent` on an existing Podman service that registers the Node and
serves streaming but runs no pods (the tests make the pods' containers themselves). Prints
``ready`` once both run; stops on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from agent.main import Agent, AgentConfig
from edgek.tasks import run_until_signalled


class StreamingNode(Agent):
    """An Agent that runs no pods; ``serving`` is set once its streaming server runs."""

    def __init__(self, config: AgentConfig) -> None:
        super().__init__(config)
        self.serving = asyncio.Event()

    async def _start_pods(self, cidr: str) -> None:
        """Nothing: the tests' containers are made directly in Podman."""

    async def _serve_streaming(self) -> None:
        await super()._serve_streaming()
        self.serving.set()


async def main() -> None:
    """Parse the flags, run until signalled."""
    parser = argparse.ArgumentParser()
    for flag in ("--server", "--token", "--data-dir", "--node-name", "--podman-socket"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = AgentConfig(
        server=args.server,
        token=args.token,
        data_dir=Path(args.data_dir),
        node_name=args.node_name,
        node_ip=["127.0.0.1"],
        kubelet_port=args.port,
        podman_socket=args.podman_socket,
    )
    agent = StreamingNode(config)

    async def start() -> None:
        await agent.start()
        await agent.serving.wait()

    await run_until_signalled(start(), agent.stop, lambda: print("ready", flush=True))


if __name__ == "__main__":
    asyncio.run(main())
