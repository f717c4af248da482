"""Credential requests: how fast connectors answers the proxy for a cached credential.

    python -m bench.connectors [--n 5000]

Starts the connectors service (NATS_URL / DATABASE_URL when set, else its own), creates a
bearer connector, then measures `warden.v1.credentials.get` round trips (sequential and
with 32 in flight) against a baseline measured in the same run: a bare NATS request/reply
to a trivial responder on the same server. Prints p50/p99 and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.js.errors
from warden_cli.embedded import Stack, StackConfig, free_port
from warden_common.contracts import CREDENTIALS_GET, CredentialRequest
from warden_common.natsauth import inbox_prefix

from bench.scratch import clean, use_fresh_database


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


async def _timed(fn, n: int, inflight: int) -> list[float]:  # type: ignore[no-untyped-def]
    lat: list[float] = []
    sem = asyncio.Semaphore(inflight)

    async def one() -> None:
        async with sem:
            t = time.perf_counter()
            await fn()
            lat.append((time.perf_counter() - t) * 1e6)

    await asyncio.gather(*(one() for _ in range(n)))
    return lat


async def main(n: int) -> None:
    cfg = StackConfig(
        data_dir=Path(tempfile.mkdtemp(prefix="warden-bench-conn-")),
        root="bc" + secrets.token_hex(3),
        nats_url=os.environ.get("NATS_URL"),
        ports={"connectors": free_port()},
        log_level="warning",
    )
    admin_dsn = os.environ.get("DATABASE_URL")
    await use_fresh_database(cfg, admin_dsn)
    stack = Stack(cfg)
    try:
        stack._local_secrets()
        stack._start_nats()
        stack._start_postgres()
        stack.urls = {"connectors": f"http://127.0.0.1:{cfg.ports['connectors']}"}
        stack.start_service("connectors")
        await stack.wait_ready(["connectors"])
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {stack.admin_token}"}) as h:
            (
                await h.post(
                    f"{stack.urls['connectors']}/v1/connectors",
                    json={
                        "name": "bench",
                        "url": "https://mcp.example.com/mcp",
                        "auth": {"type": "bearer", "token": "bench-" + secrets.token_hex(16)},
                    },
                )
            ).raise_for_status()
        kw: dict[str, Any] = (
            {"user": "proxy", "password": stack.passwords["proxy"], "inbox_prefix": inbox_prefix("proxy")}
            if stack.passwords
            else {}
        )
        nc = await nats.connect(stack.nats_url, **kw)
        subject = CREDENTIALS_GET.on(cfg.root)
        body = CredentialRequest(connector="bench").model_dump_json().encode()
        echo_subject = f"{cfg.root}.v1.bench.echo"
        if not stack.passwords:  # the embedded NATS permissions do not allow a bench responder

            async def echo(m):  # type: ignore[no-untyped-def]
                await m.respond(b'{"result":{}}')

            await nc.subscribe(echo_subject, cb=echo)
            await nc.flush()
        await nc.request(subject, body, timeout=5)  # warm the cache
        rows = []
        for inflight in (1, 32):
            cred = await _timed(lambda: nc.request(subject, body, timeout=5), n, inflight)
            base = (
                await _timed(lambda: nc.request(echo_subject, body, timeout=5), n, inflight)
                if not stack.passwords
                else None
            )
            rows.append((inflight, cred, base))
        print(f"\ncredential requests (cached bearer credential), {n} per cell, µs")
        print(f"{'in flight':>9} {'path':<22} {'p50':>8} {'p99':>8} {'mean':>8} {'vs baseline p50':>16}")
        for inflight, cred, base in rows:
            if base:
                print(
                    f"{inflight:>9} {'baseline NATS echo':<22} {_pct(base, 0.5):>8.0f} {_pct(base, 0.99):>8.0f} "
                    f"{statistics.mean(base):>8.0f} {'1.00x':>16}"
                )
            ratio = f"{_pct(cred, 0.5) / _pct(base, 0.5):.2f}x" if base else "-"
            print(
                f"{inflight:>9} {'credentials.get':<22} {_pct(cred, 0.5):>8.0f} {_pct(cred, 0.99):>8.0f} "
                f"{statistics.mean(cred):>8.0f} {ratio:>16}"
            )
        print("\n(the round trip includes NATS both ways; the service's own work is the difference to the baseline)")
        await nc.close()
    finally:
        stack.stop()
        await clean(cfg, admin_dsn)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    asyncio.run(main(ap.parse_args().n))
