"""A second proxy replica of a running stack (same NATS, same Postgres), for tests."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from warden_cli.embedded import Stack, free_port

from support.infra import wait_for


@asynccontextmanager
async def second_proxy(stack: Stack) -> AsyncIterator[str]:
    """Start another proxy process; yields its base URL; stops it after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = stack.service_env("proxy", "WARDEN_PROXY_")
    env.update({"WARDEN_PROXY_HTTP__PORT": str(port), "WARDEN_PROXY_HTTP__PUBLIC_URL": url})
    proc = stack._spawn(f"proxy-{port}", [sys.executable, "-m", "warden_proxy"], env)
    try:
        async with httpx.AsyncClient(timeout=2, trust_env=False) as http:

            async def ready() -> bool:
                assert proc.popen.poll() is None, proc.log_path.read_text()[-2000:]
                try:
                    return (await http.get(f"{url}/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            assert await wait_for(ready, timeout=30, interval=0.1)
        yield url
    finally:
        proc.popen.terminate()
        proc.popen.wait(timeout=15)
        stack.procs.remove(proc)
