"""The agent ``edgek server`` runs in-process for its own node (unless ``--disable-agent``),
as k3s does, so one command gives a one-node cluster that runs pods: the same
:class:`agent.main.Agent` as ``edgek agent``, joining with the server's node token over the
local URL, its state under the same data dir (``<data-dir>/agent/``). The server labels the
node ``node-role.kubernetes.io/control-plane`` (a node may not set node-role labels on
itself)."""

from __future__ import annotations

import asyncio
import logging

from agent.bootstrap import BootstrapError
from agent.main import Agent, AgentConfig
from agent.podman.service import PodmanServiceError
from edgek.apiclient import ApiClient, ApiClientError
from edgek.kubeconfig import data_dir_kubeconfig
from server.config import ServerConfig

log = logging.getLogger("edgek.server")

CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"


async def start_agent(cfg: ServerConfig) -> Agent | None:
    """Start the embedded agent and label its node; None (logged) when it cannot start,
    e.g. without Podman: the control plane runs on."""
    token_file = cfg.data_dir / "server" / "node-token"
    token = (await asyncio.to_thread(token_file.read_text)).strip()
    agent = Agent(AgentConfig(server=cfg.local_url, token=token, data_dir=cfg.data_dir))
    try:
        await agent.start()
        admin = ApiClient.from_kubeconfig(data_dir_kubeconfig(cfg.data_dir))
        labels = {"metadata": {"labels": {CONTROL_PLANE_LABEL: "true"}}}
        await admin.patch(f"/api/v1/nodes/{agent.name}", labels, patch_type="strategic")
    except (ApiClientError, BootstrapError, PodmanServiceError, OSError) as e:
        log.error("the embedded agent did not start: %s (use --disable-agent to run none)", e)
        await agent.stop()
        return None
    log.info("embedded agent: node %s runs pods", agent.name)
    return agent
