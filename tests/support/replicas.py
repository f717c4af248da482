"""A second proxy replica of a running stack (same NATS, same Postgres), for tests."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from warden_cli.embedded import Stack, free_port

from support.infra import wait_for


@asynccontextmanager
async def second_proxy(stack: Stack, extra_env: dict[str, str] | None = None) -> AsyncIterator[str]:
    """Start another proxy process (with `extra_env` besides the stack's); yields its base URL
    (its log is `replica_log(stack, url)`); stops it after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = stack.service_env("proxy", "WARDEN_PROXY_")
    env.update({"WARDEN_PROXY_HTTP__PORT": str(port), "WARDEN_PROXY_HTTP__PUBLIC_URL": url, **(extra_env or {})})
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


def replica_log(stack: Stack, url: str) -> Path:
    """The log file of the replica `second_proxy` started at `url` (kept after it stops)."""
    return stack.cfg.data_dir / "logs" / f"proxy-{urlsplit(url).port}.log"
