"""`warden run`: the embedded default. NATS, Postgres, the four services, the console and a demo MCP
server, bootstrapped so an agent can list and call a demo tool within a minute."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from warden_cli.embedded import Stack, StackConfig, StartError, _port_free

__all__ = ["run"]


def _say(msg: str) -> None:
    print(f"  · {msg}", flush=True)


async def _bootstrap(stack: Stack, demo_url: str, demo_token: str) -> str:
    """Connect the demo server, register its tools, grant them to profile `demo`, make a key."""
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    async with httpx.AsyncClient(timeout=30, headers=admin) as http:

        async def call(method: str, url: str, ok: tuple[int, ...] = (200, 201, 204), **kw: Any) -> Any:
            r = await http.request(method, url, **kw)
            if r.status_code not in ok:
                raise StartError(f"bootstrap step {method} {url} failed: {r.status_code} {r.text[:300]}")
            return r.json() if r.content else None

        c, reg, p = stack.urls["connectors"], stack.urls["registry"], stack.urls["proxy"]
        r = await http.get(f"{c}/v1/connectors/demo")
        if r.status_code == 404:
            await call(
                "POST",
                f"{c}/v1/connectors",
                json={
                    "name": "demo",
                    "url": demo_url,
                    "description": "Warden's demo MCP server",
                    "auth": {"type": "bearer", "token": demo_token},
                },
            )
        else:
            await call(
                "PATCH",
                f"{c}/v1/connectors/demo",
                json={"url": demo_url, "auth": {"type": "bearer", "token": demo_token}},
            )
        await call("POST", f"{reg}/v1/connectors/demo/tools", json={}, ok=(200, 201, 409))
        await call(
            "POST", f"{reg}/v1/profiles", json={"name": "demo", "description": "demo profile"}, ok=(200, 201, 409)
        )
        grants = (await call("GET", f"{reg}/v1/profiles/demo")).get("grants", [])
        if not any(g.get("tool") == "demo__*" for g in grants):
            await call("POST", f"{reg}/v1/profiles/demo/grants", json={"tool": "demo__*", "reason": "warden run demo"})
        key = await call("POST", f"{p}/v1/agent-keys", json={"name": f"demo-{int(time.time())}", "profile": "demo"})
        return str(key["key"])


def _strict_banner(stack: Stack, seconds: float) -> None:
    print(
        f"""
Warden is running with production guards (--strict; ready in {seconds:.1f}s). Ctrl-C stops everything.
Upstream MCP servers and OAuth servers must be https at public addresses; no demo server was started.

  MCP endpoint (agents):   {stack.urls["proxy"]}/mcp
  Admin token:             {stack.admin_token}
  Admin APIs: connectors {stack.urls["connectors"]}  registry {stack.urls["registry"]}
              proxy {stack.urls["proxy"]}  audit {stack.urls["audit"]}
  Logs:                    {stack.cfg.data_dir / "logs"}
""",
        flush=True,
    )


def _banner(stack: Stack, key: str, seconds: float) -> None:
    mcp = f"{stack.urls['proxy']}/mcp"
    print(
        f"""
Warden is running (ready in {seconds:.1f}s). Ctrl-C stops everything.

  Console (web UI):        {stack.urls["console"]}
      sign in as administrator with the admin token below

  MCP endpoint (agents):   {mcp}
  Agent API key (profile demo, shown once):
      {key}
  Admin token:             {stack.admin_token}
  Admin APIs (OpenAPI at /docs):
      connectors  {stack.urls["connectors"]}/docs
      registry    {stack.urls["registry"]}/docs
      proxy       {stack.urls["proxy"]}/docs
      audit       {stack.urls["audit"]}/docs
  NATS:                    {stack.nats_url}
  Logs:                    {stack.cfg.data_dir / "logs"}

Try it with curl (call the demo echo tool):
  curl -s {stack.urls["proxy"]}/v1/tools/demo__echo/call \\
       -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\
       -d '{{"arguments": {{"text": "hello"}}}}'

Or with the mcp client in Python:
  import asyncio, httpx2
  from mcp import Client
  from mcp.client.streamable_http import streamable_http_client
  async def main():
      http = httpx2.AsyncClient(headers={{"Authorization": "Bearer {key}"}})
      async with Client(streamable_http_client("{mcp}", http_client=http)) as c:
          print([t.name for t in (await c.list_tools()).tools])
          print((await c.call_tool("demo__echo", {{"text": "hello"}})).content[0].text)
  asyncio.run(main())

Watch the audit log:  curl -sN {stack.urls["audit"]}/v1/tail -H 'Authorization: Bearer {stack.admin_token}'
""",
        flush=True,
    )


def run(*, data_dir: Path, base_port: int, nats_port: int, demo_port: int, log_level: str, strict: bool = False) -> int:
    database_url = os.environ.get("DATABASE_URL") or None
    ports = {
        "console": base_port,
        "connectors": base_port + 1,
        "registry": base_port + 2,
        "proxy": base_port + 3,
        "audit": base_port + 4,
    }
    cfg = StackConfig(
        data_dir=data_dir,
        nats_port=nats_port,
        database_url=database_url,
        ports=ports,
        log_level=log_level,
        allow_insecure=not strict,
        admin_tokens=os.environ.get("WARDEN_ADMIN_TOKENS") or None,
    )
    stack = Stack(cfg, progress=_say)
    t0 = time.monotonic()
    stop = asyncio.Event()

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print("Starting Warden" + (" (Postgres from DATABASE_URL)" if database_url else ""), flush=True)
        try:
            if not _port_free(demo_port):
                raise StartError(f"port {demo_port} (demo MCP server) is in use: pass --demo-port")
            await stack.start()
            if strict:  # production guards refuse the demo server (http on loopback): none is started
                _strict_banner(stack, time.monotonic() - t0)
                while not stop.is_set():
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=1.0)
                    except TimeoutError:
                        stack._check_alive()
                return 0
            demo_token = secrets.token_urlsafe(24)
            _say("starting the demo MCP server")
            stack._spawn(
                "demo-mcp",
                [sys.executable, "-m", "warden_cli.demo_server", "--port", str(demo_port)],
                {"WARDEN_DEMO_TOKEN": demo_token},
            )
            await _wait_port(demo_port, stack)
            _say("connecting the demo server and registering its tools")
            key = await _bootstrap(stack, f"http://127.0.0.1:{demo_port}/mcp", demo_token)
            _banner(stack, key, time.monotonic() - t0)
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
                except TimeoutError:
                    stack._check_alive()
            return 0
        except StartError as e:
            print(f"warden: {e}", file=sys.stderr, flush=True)
            return 1
        finally:
            print("Stopping Warden…", flush=True)
            stack.stop()
            print("Stopped.", flush=True)

    return asyncio.run(main())


async def _wait_port(port: int, stack: Stack) -> None:
    deadline = time.monotonic() + 15
    while _port_free(port):
        stack._check_alive()
        if time.monotonic() > deadline:
            raise StartError("the demo MCP server did not start; see its log")
        await asyncio.sleep(0.05)
