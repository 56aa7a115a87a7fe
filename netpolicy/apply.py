"""Applies a policy :class:`~netpolicy.policy.Ruleset` to the kernel of the current network
namespace, without a per-rule call: ``ipset restore`` (sets replaced by swap), then one
``iptables-restore --noflush`` that rewrites edgek's chains, removes its stale ones and adds
the ``FORWARD`` jump when it is missing, then the sets no rule uses any more are destroyed.
Rules and sets of anyone else are never touched. :func:`remove` takes everything out again.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from netpolicy.policy import SET_PREFIX, TMP_SET_PREFIX, TOP_CHAIN, Ruleset, is_policy_chain

log = logging.getLogger(__name__)

HOOK = f"FORWARD -j {TOP_CHAIN}"
#: Bridged traffic between two pods of the node must cross iptables to be filtered.
BRIDGE_SYSCTL = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")


class ApplyError(Exception):
    """A command that programs the kernel failed."""


async def _run(*argv: str, stdin: str = "") -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode())
    if proc.returncode:
        raise ApplyError(f"{argv[0]} failed ({proc.returncode}): {err.decode().strip()}")
    return out.decode()


async def _filter_table() -> tuple[set[str], int]:
    """Our chains now in the filter table, and how FORWARD jumps to the top one: 0 not at
    all, 1 as its first rule, -1 further down (after rules that may accept first, such as
    netavark's, which inserts its own at the top when a network comes up)."""
    lines = (await _run("iptables-save", "-t", "filter")).splitlines()
    chains = {line[1:].split()[0] for line in lines if line.startswith(":")}
    forward = [line for line in lines if line.startswith("-A FORWARD ")]
    hooked = 0 if f"-A {HOOK}" not in forward else 1 if forward[0] == f"-A {HOOK}" else -1
    return {c for c in chains if is_policy_chain(c)}, hooked


async def _our_sets() -> set[str]:
    names = (await _run("ipset", "list", "-n")).split()
    return {n for n in names if n.startswith((SET_PREFIX, TMP_SET_PREFIX))}


def bridge_filtering() -> None:
    """Let bridged (same-node) pod traffic through iptables, when the kernel can."""
    if BRIDGE_SYSCTL.exists() and BRIDGE_SYSCTL.read_text().strip() != "1":
        BRIDGE_SYSCTL.write_text("1\n")


async def apply(ruleset: Ruleset) -> None:
    """Make the kernel's policy chains and sets exactly ``ruleset``'s, with FORWARD jumping
    to them first."""
    bridge_filtering()
    await _run("ipset", "restore", stdin=ruleset.ipset_restore())
    existing, hooked = await _filter_table()
    text = ruleset.iptables_restore(existing)
    if hooked != 1:
        hook = ([f"-D {HOOK}"] if hooked else []) + [f"-I FORWARD 1 -j {TOP_CHAIN}"]
        hook_lines = "".join(f"{line}\n" for line in hook)
        text = text.replace("COMMIT\n", f"{hook_lines}COMMIT\n")
    await _run("iptables-restore", "--noflush", stdin=text)
    stale = sorted(await _our_sets() - set(ruleset.sets))
    if stale:
        await _run("ipset", "restore", stdin="".join(f"destroy {n}\n" for n in stale))


async def remove() -> None:
    """Take all of edgek's policy chains, the FORWARD jump and the sets out."""
    existing, hooked = await _filter_table()
    lines = ["*filter"]
    lines += [f"-D {HOOK}"] if hooked else []
    lines += [f":{c} - [0:0]" for c in sorted(existing)]
    lines += [f"-X {c}" for c in sorted(existing)]
    lines.append("COMMIT")
    await _run("iptables-restore", "--noflush", stdin="\n".join(lines) + "\n")
    stale = sorted(await _our_sets())
    if stale:
        await _run("ipset", "restore", stdin="".join(f"destroy {n}\n" for n in stale))
