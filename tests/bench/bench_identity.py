"""Identity benchmark: agent bootstrap time against a local server, and the cost of
authentication + authorization on GET (an RBAC-bound service-account token user vs the
admin client certificate, same run).

Run: python tests/bench/bench_identity.py
"""

from __future__ import annotations

import asyncio
import json
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from agent.bootstrap import bootstrap  # noqa: E402
from tests.bench.bench_api import get_many, pct  # noqa: E402
from tests.helpers import Kubectl, kubectl_binaries, ssl_context, start_server  # noqa: E402

#: Alternating rounds per client; the medians of their p99s are compared.
ROUNDS = 7


async def get_p99(url: str, ctx: ssl.SSLContext, headers: dict[str, str] | None = None) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=64)) as s:
        await get_many(s, url, 500, 16, headers)
        return pct(await get_many(s, url, 3000, 16, headers), 0.99) * 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        srv = start_server(tmp)
        try:
            token = (srv.data_dir / "server" / "node-token").read_text().strip()
            times = []
            for i in range(5):
                t0 = time.perf_counter()
                asyncio.run(bootstrap(srv.url, token, f"bench-{i}", tmp / f"a{i}", node_ips=[]))
                times.append(time.perf_counter() - t0)
            kubectl = Kubectl(next(iter(kubectl_binaries().values())), srv.kubeconfig, tmp / "c")
            kubectl("create", "serviceaccount", "bench")
            kubectl("create", "configmap", "target", "--from-literal=a=1")
            kubectl(
                "create",
                "rolebinding",
                "bench",
                "--clusterrole=view",
                "--serviceaccount=default:bench",
            )
            sa_token = kubectl("create", "token", "bench").strip()
            admin_ctx = ssl_context(srv.kubeconfig, tmp)
            plain_ctx = ssl.create_default_context(cafile=str(tmp / "ca.crt"))
            url = f"{srv.url}/api/v1/namespaces/default/configmaps/target"
            # alternate the two clients over several rounds: a single p99 of a few thousand
            # requests moves more with machine noise than the difference being measured
            admin_runs, token_runs = [], []
            for _ in range(ROUNDS):
                admin_runs.append(asyncio.run(get_p99(url, admin_ctx)))
                token_runs.append(
                    asyncio.run(get_p99(url, plain_ctx, {"Authorization": f"Bearer {sa_token}"}))
                )
            admin_p99 = statistics.median(admin_runs)
            token_p99 = statistics.median(token_runs)
        finally:
            srv.stop()
    out = {
        "bootstrap_median_s": statistics.median(times),
        "bootstrap_max_s": max(times),
        "get_p99_admin_cert_ms": admin_p99,
        "get_p99_rbac_token_ms": token_p99,
        "rounds": ROUNDS,
        "authn_authz_overhead": token_p99 / admin_p99 - 1,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
