"""Applying a :class:`~netpolicy.proxy.Ruleset` with one ``iptables-restore --noflush``.

:class:`Applier` reads the current state of the nat and filter tables (``iptables-save``) for
the proxy's chains and hook jumps already there, and writes one restore file: every proxy chain
rewritten (or, after a first full sync, only the chains that changed since the last apply),
stale proxy chains deleted, missing hook jumps added. The restore is atomic per table, and
chains and rules of anyone else are never named, so nothing else on the host is touched.
Nothing is removed when the agent stops: the rules keep forwarding traffic, and the next
start writes the identical ruleset over them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from netpolicy.proxy import HOOKS, Ruleset, hook_rule, owns, render

TABLES = ("nat", "filter")


class IptablesError(Exception):
    """An iptables command failed; ``str(e)`` has its output."""


async def run(argv: Sequence[str], stdin: str | None = None) -> str:
    """Run one command, feeding ``stdin``; its stdout, or IptablesError."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    if proc.returncode:
        raise IptablesError(f"{' '.join(argv[:2])}: {err.decode().strip() or proc.returncode}")
    return out.decode()


def parse_save(text: str) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """From ``iptables-save`` output: the service proxy's chains per table, and the rules
    (without the leading ``-A``) of other chains that jump to one of them (its hooks)."""
    chains: dict[str, set[str]] = {}
    hooked: dict[str, set[str]] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
            chains.setdefault(table, set())
            hooked.setdefault(table, set())
        elif line.startswith(":"):
            name = line[1:].split()[0]
            if owns(name):
                chains[table].add(name)
        elif line.startswith("-A ") and " -j " in line:
            source = line.split()[1]
            target = line.rsplit(" -j ", 1)[1].split()[0]
            if owns(target) and not owns(source):
                hooked[table].add(line[3:])
    return chains, hooked


class Applier:
    """Writes rulesets to the tables of the current network namespace (``prefix`` runs the
    commands elsewhere, e.g. ``nsenter --net=...``)."""

    def __init__(self, prefix: Sequence[str] = ()) -> None:
        self.prefix = list(prefix)
        self._last: Ruleset | None = None

    async def save(self) -> str:
        """``iptables-save`` of the tables edgek uses."""
        return "".join([await run([*self.prefix, "iptables-save", "-t", t]) for t in TABLES])

    async def apply(self, rs: Ruleset, full: bool = False) -> str:
        """Make the tables hold ``rs``; with ``full`` (and on the first apply) the tables are
        read and every edgek chain is rewritten, otherwise only the chains that differ from
        the last apply are (the tables are taken to hold what it wrote; the periodic full
        sync repairs anything changed behind edgek's back). Returns the restore text."""
        last = None if full else self._last
        if last is None:
            present, hooked = parse_save(await self.save())
        else:  # the tables hold what the last apply wrote: no need to read them back
            present = {t: set(chains) for t, chains in last.tables.items()}
            hooked = expected_hooks()
        unchanged: dict[str, set[str]] = {}
        if last is not None:
            for table, chains in rs.tables.items():
                before = last.tables.get(table, {})
                unchanged[table] = {
                    c
                    for c, rules in chains.items()
                    if c in present.get(table, set()) and before.get(c) == rules
                }
        text = render(rs, present, hooked, unchanged)
        self._last = None  # a failed restore leaves the tables unknown
        await run([*self.prefix, "iptables-restore", "-w", "--noflush"], text)
        self._last = rs
        return text

    async def remove(self) -> None:
        """Delete every chain and hook jump of the service proxy (uninstall)."""
        present, hooked = parse_save(await self.save())
        lines: list[str] = []
        for table in TABLES:
            jumps = sorted(hooked.get(table, set()))
            chains = sorted(present.get(table, set()))
            if not jumps and not chains:
                continue
            lines.append(f"*{table}")
            lines.extend(f"-D {rule}" for rule in jumps)
            lines.extend(f":{c} - [0:0]" for c in chains)
            lines.extend(f"-X {c}" for c in chains)
            lines.append("COMMIT")
        if lines:
            await run(
                [*self.prefix, "iptables-restore", "-w", "--noflush"], "\n".join(lines) + "\n"
            )
        self._last = None


def expected_hooks() -> dict[str, set[str]]:
    """The hook jumps edgek installs, per table, as :func:`parse_save` reports them."""
    return {t: {hook_rule(*h) for h in hooks} for t, hooks in HOOKS.items()}
