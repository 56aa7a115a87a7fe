"""A node for the streaming tests, run as a process inside the test's network namespace:
an :class:`agent.main.Agent` (registers the Node) plus its streaming server on an existing
Podman service. Prints ``ready`` once both run; stops on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from agent.main import Agent, AgentConfig
from agent.podman.client import PodmanClient
from agent.streaming.server import start_streaming
from edgek.tasks import run_until_signalled


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
    )
    agent = Agent(config)
    podman = PodmanClient(args.podman_socket)
    servers = []

    async def start() -> None:
        await agent.start()
        assert agent.client is not None
        servers.append(await start_streaming(agent.client, config.agent_dir, args.port, podman))

    async def stop() -> None:
        for server in servers:
            await server.stop()
        await agent.stop()
        await podman.close()

    await run_until_signalled(start(), stop, lambda: print("ready", flush=True))


if __name__ == "__main__":
    asyncio.run(main())
