"""``edgek sim``: simulated nodes against a running server."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from edgek.cmd.common import fail, setup_logging, tune_gc


def sim(
    server: Annotated[str, typer.Option(help="API server URL, e.g. https://127.0.0.1:6443.")],
    nodes: Annotated[int, typer.Option(min=1, help="How many nodes to simulate.")],
    token: Annotated[
        str | None, typer.Option(help="Join token: each node bootstraps its own identity.")
    ] = None,
    kubeconfig: Annotated[
        Path | None, typer.Option(help="Admin kubeconfig used for all nodes (instead of --token).")
    ] = None,
    name_prefix: Annotated[str, typer.Option(help="Node names are <prefix>0..N-1.")] = "sim-",
    pod_ready_seconds: Annotated[
        float, typer.Option(min=0, help="Seconds from Running to Ready.")
    ] = 1.0,
    pod_run_seconds: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds a restartPolicy Never/OnFailure pod runs before it exits "
            "(annotation sim.edgek.io/run-seconds overrides).",
        ),
    ] = 5.0,
    lease_seconds: Annotated[
        int, typer.Option(min=1, help="Node lease duration; renewed every quarter of it.")
    ] = 40,
    fail_node: Annotated[
        list[str] | None,
        typer.Option(help="Register this node, then never heartbeat (repeatable)."),
    ] = None,
    fail_file: Annotated[
        Path | None,
        typer.Option(
            help="On SIGUSR1, fail the nodes named in this file (one per line) besides "
            "--fail-node, and recover the others."
        ),
    ] = None,
    cpu: Annotated[str, typer.Option(help="CPU capacity of each node.")] = "4",
    memory: Annotated[str, typer.Option(help="Memory capacity of each node.")] = "8Gi",
    max_pods: Annotated[int, typer.Option(min=1, help="Pod capacity of each node.")] = 110,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Token mode: node keys and certificates (default ~/.local/state/edgek/sim)."
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Concurrent API requests.")] = 64,
    debug: Annotated[bool, typer.Option(help="Log every state change.")] = False,
) -> None:
    """Simulate nodes: register them, heartbeat, and run the pods bound to them."""
    from agent.bootstrap import BootstrapError
    from agent.sim import SimConfig, default_data_dir, run_cli
    from agent.simobjects import NodeShape
    from edgek.apiclient import ApiClientError
    from edgek.quantity import parse_quantity

    for flag, value in (("--cpu", cpu), ("--memory", memory)):
        try:
            parse_quantity(value)
        except ValueError:
            fail(f"invalid value for {flag}: {value!r}")
    config = SimConfig(
        server=server,
        nodes=nodes,
        kubeconfig=kubeconfig,
        token=token or "",
        name_prefix=name_prefix,
        pod_ready_seconds=pod_ready_seconds,
        pod_run_seconds=pod_run_seconds,
        lease_seconds=lease_seconds,
        fail_nodes=tuple(fail_node or ()),
        shape=NodeShape(cpu=cpu, memory=memory, max_pods=max_pods),
        data_dir=data_dir or default_data_dir(),
        concurrency=concurrency,
    )
    try:
        config.check()
    except ValueError as e:
        fail(str(e))
    setup_logging(logging.DEBUG if debug else logging.WARNING)
    tune_gc()
    try:
        asyncio.run(run_cli(config, fail_file))
    except (ApiClientError, BootstrapError, OSError, ValueError) as e:
        fail(f"sim: {e}")
