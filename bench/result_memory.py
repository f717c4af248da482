"""The proxy's memory for a tool result of 400,000 content items (issue 16, item 0).

    source /work/wt/env.sh  # or NATS_URL=... DATABASE_URL=...
    python -m bench.result_memory [--items 400000] [--calls 3] [--limits 1000000,10000]

For each `WARDEN_PROXY_MAX_RESULT_ITEMS` in `--limits` a fresh embedded stack (on the shared
NATS and Postgres, isolated) and a real MCP upstream (the `mcp` package) whose tool answers
`--items` text items; an agent calls it `--calls` times. Printed per limit: the proxy's
RSS after a warm-up call, its peak RSS (VmHWM) and its RSS after the calls, from
/proc/<pid>/status. The calls go through the HTTP call API (an MCP client's SSE reader takes
at most 1 MiB per event, so it could not receive the "before" result at all). A limit above
`--items` is "before" (the result is built, relayed and audited), the default 10,000 is
"after" (refused before it is built).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from support.admin import admin_client  # noqa: E402
from support.hostile import hostile_upstream  # noqa: E402
from support.infra import isolated_stack, nats_server, postgres_server  # noqa: E402


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) // 1024  # MB
    return out


async def measure(nats_url: str, admin_dsn: str, limit: int, items: int, calls: int) -> None:
    env = {"proxy": {"WARDEN_PROXY_MAX_RESULT_ITEMS": str(limit)}}
    with tempfile.TemporaryDirectory(prefix="warden-mem-") as d:
        async with isolated_stack(nats_url, admin_dsn, Path(d), env) as stack, hostile_upstream() as up:
            pid = next(p.popen.pid for p in stack.procs if p.name == "proxy")
            async with admin_client(stack) as admin:
                c, _, key = await admin.setup(up.url, up.token)
                url = f"{stack.urls['proxy']}/v1/tools/{c}__items/call"
                async with httpx.AsyncClient(timeout=300, headers={"Authorization": f"Bearer {key}"}) as http:
                    (await http.post(url, json={"arguments": {"count": 10}})).raise_for_status()
                    base = _status(pid)
                    outcomes = []
                    for _ in range(calls):
                        r = await http.post(url, json={"arguments": {"count": items}})
                        if r.status_code == 200:
                            outcomes.append(f"{len(r.json()['content']):,} items")
                        else:
                            outcomes.append(f"HTTP {r.status_code} {r.json()['error']['code']}")
                    after = _status(pid)
            print(
                f"limit {limit:>9,}: {items:,} items x{calls} -> {', '.join(sorted(set(outcomes)))}; "
                f"proxy RSS {base['VmRSS']} MB after warm-up, peak {after['VmHWM']} MB, "
                f"{after['VmRSS']} MB after the calls",
                flush=True,
            )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=400_000)
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--limits", default="1000000,10000")
    args = ap.parse_args()
    with nats_server() as nats_url, postgres_server() as admin_dsn:
        for limit in (int(x) for x in args.limits.split(",")):
            await measure(nats_url, admin_dsn, limit, args.items, args.calls)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main())
