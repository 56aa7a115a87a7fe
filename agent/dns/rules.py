"""How pods reach the node's DNS server at the cluster DNS address: a DNAT of
``<cluster-dns>:53`` (UDP and TCP) to the address the server listens on, in edgek's own
chain ``EDGEK-DNS`` hooked from ``PREROUTING`` (pods) and ``OUTPUT`` (the node itself),
applied atomically with ``iptables-restore --noflush`` (other rules are left alone).
"""

from __future__ import annotations

import asyncio

CHAIN = "EDGEK-DNS"
COMMENT = "edgek cluster DNS"


def dnat_rules(cluster_dns: str, listen: str, port: int = 53) -> str:
    """The ``iptables-restore`` input (nat table) sending ``cluster_dns:53`` to
    ``listen:port``. Re-applying it gives the same rules (declaring the chain flushes it);
    the jumps from the built-in chains are added once by :func:`apply_rules`."""
    lines = ["*nat", f":{CHAIN} - [0:0]"]
    for proto in ("udp", "tcp"):
        lines.append(
            f"-A {CHAIN} -d {cluster_dns}/32 -p {proto} -m {proto} --dport 53 "
            f'-m comment --comment "{COMMENT}" -j DNAT --to-destination {listen}:{port}'
        )
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def jump_rules() -> list[list[str]]:
    """The ``iptables -t nat`` arguments (after ``-C``/``-I``) of the jumps to the chain."""
    return [[hook, "-j", CHAIN] for hook in ("PREROUTING", "OUTPUT")]


async def _run(*args: str, stdin: bytes = b"", check: bool = True) -> int:
    """Run a command; OSError with its stderr when it fails and ``check``."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate(stdin)
    if proc.returncode and check:
        raise OSError(f"{args[0]}: {err.decode(errors='replace').strip()}")
    return proc.returncode or 0


async def apply_rules(cluster_dns: str, listen: str, port: int = 53) -> None:
    """Program the DNAT and, when missing, the jumps to it (OSError when iptables refuses
    or is missing)."""
    await _run(
        "iptables-restore", "--noflush", stdin=dnat_rules(cluster_dns, listen, port).encode()
    )
    for jump in jump_rules():
        if await _run("iptables", "-w", "-t", "nat", "-C", *jump, check=False):
            await _run("iptables", "-w", "-t", "nat", "-I", *jump)
