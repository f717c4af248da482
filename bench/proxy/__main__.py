"""Proxy overhead: direct MCP calls vs the same calls through Warden, in one run.

    python -m bench.proxy [--calls 2000] [--concurrency 1,8,32] [--upstream python|node]
                          [--upstream-workers 1] [--proxy-replicas 1] [--client sdk|raw]

Starts the embedded stack (NATS_URL / DATABASE_URL when set, else its own), an upstream
echo server in its own process(es) — `python`: the `mcp` package's low-level server
(echo_server.py); `node`: the official TypeScript SDK's McpServer (echo_server.mjs, a
cheaper upstream, to show Warden's own ceiling); both stateless with JSON responses —
and measures for each concurrency: direct (mcp client -> upstream), through the MCP
endpoint (mcp client -> proxy -> upstream) and through the NATS API (WardenClient ->
proxy -> upstream): p50/p99 latency, added latency vs direct, calls/s, and CPU ms per
call spent by all Warden processes (from /proc via psutil), with the upstream's and the
load generator's beside them.

`--proxy-replicas N` runs N proxy processes in one queue group: NATS splits the calls
between them, and the MCP clients are dealt round-robin over the replicas' HTTP ports;
the CPU table shows each replica's share.

`--client raw` replaces the `mcp` SDK client of the direct and MCP paths by a raw HTTP/1.1
client (one kept-alive connection each) that sends the same JSON-RPC `tools/call` — to the
upstream as a stateless 2025-06-18 request, to Warden as a 2026-07-28 one with its `_meta`
envelope and `Mcp-Method` / `Mcp-Name` headers — and checks the answer. The SDK client costs
2.5-4 ms of CPU per call, more than Warden: on two cores it decides what the MCP path
measures; the raw client shows what Warden's endpoint itself can do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import httpx2
import psutil
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from warden_cli.embedded import SERVICES, Stack, StackConfig, free_port
from warden_client import WardenClient
from warden_proxy.h1 import H1Pool

from bench.scratch import clean, use_fresh_database

_MODERN = "2026-07-28"  # the stateless revision Warden's endpoint serves


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


async def _wait_port(port: int) -> None:
    async with asyncio.timeout(15):
        while True:
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.05)


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) so far of each process (and its children)."""
    out: dict[str, float] = {}
    for name, pid in pids.items():
        total = 0.0
        try:
            proc = psutil.Process(pid)
            # this process's children are the stack and the upstream: the generator is itself only
            for p in [proc] if pid == os.getpid() else [proc, *proc.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
        out[name] = total
    return out


def _infra_pids(stack: Stack) -> dict[str, int]:
    """The stack's NATS server and (embedded) postmaster, whose backends are its children."""
    out = {p.name: p.popen.pid for p in stack.procs if p.name == "nats"}
    for proc in psutil.process_iter(["name", "ppid"]):
        if proc.info["name"] in ("postgres", "postmaster") and proc.info["ppid"] == 1:
            try:
                if str(stack.cfg.data_dir) in " ".join(proc.cmdline()):
                    out["postgres"] = proc.pid
            except psutil.Error:
                pass
    return out


def _busy_s() -> float:
    """CPU seconds the whole machine has been busy (every process and the kernel)."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


async def _measure(workers: list[Callable[[], Awaitable[Any]]], calls: int) -> tuple[list[float], float]:
    lat: list[float] = []
    per = max(1, calls // len(workers))

    async def run(fn: Callable[[], Awaitable[Any]]) -> None:
        for _ in range(per):
            t = time.perf_counter()
            await fn()
            lat.append((time.perf_counter() - t) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(run(w) for w in workers))
    return lat, time.perf_counter() - t0


_ECHO_JS = Path(__file__).with_name("echo_server.mjs")


def _upstream_argv(kind: str, port: int, workers: int) -> list[str]:
    if kind == "node":
        node = shutil.which("node")
        if node is None:
            raise SystemExit("--upstream node needs node (>= 18) on PATH")
        return [node, str(_ECHO_JS), str(port), "--workers", str(workers)]
    return [sys.executable, "-m", "bench.proxy.echo_server", str(port), "--workers", str(workers)]


def _start_replicas(stack: Stack, cfg: StackConfig, n: int) -> list[tuple[str, subprocess.Popen[bytes], int]]:
    """Proxy replicas 2..n beside the stack's own: same settings, their own HTTP ports, one queue group."""
    prefix = next(p for name, _, p in SERVICES if name == "proxy")
    out = []
    for i in range(2, n + 1):
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
        env.update(stack.service_env("proxy", prefix))
        env[f"{prefix}HTTP__PORT"] = str(port)
        env[f"{prefix}HTTP__PUBLIC_URL"] = f"http://127.0.0.1:{port}"
        log = open(cfg.data_dir / f"proxy-{i}.log", "ab")  # noqa: SIM115 - the child's for its lifetime
        proc = subprocess.Popen(
            [sys.executable, "-m", "warden_proxy"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        out.append((f"proxy-{i}", proc, port))
    return out


async def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(timeout=2) as http, asyncio.timeout(60):
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"a proxy replica exited with code {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


class _RawMcp:
    """A stateless MCP `tools/call` over one kept-alive HTTP/1.1 connection; raises unless the
    answer is a result that is not an error."""

    def __init__(self, url: str, headers: dict[str, str], *, modern: bool) -> None:
        self.pool = H1Pool(url, connect_timeout_s=10)
        self.headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers}
        self.modern = modern
        self._ids = 0

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        self._ids += 1
        params: dict[str, Any] = {"name": name, "arguments": arguments}
        headers = dict(self.headers)
        if self.modern:
            params["_meta"] = {
                "io.modelcontextprotocol/protocolVersion": _MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "bench-raw", "version": "0.1.0"},
            }
            headers.update({"MCP-Protocol-Version": _MODERN, "Mcp-Method": "tools/call", "Mcp-Name": name})
        else:
            headers["MCP-Protocol-Version"] = "2025-06-18"
        body = json.dumps({"jsonrpc": "2.0", "id": self._ids, "method": "tools/call", "params": params}).encode()
        r = await self.pool.post(headers, body)
        try:
            data = await r.aread()
        finally:
            await r.aclose()
        if r.status_code != 200 or not r.headers.get("content-type", "").startswith("application/json"):
            raise RuntimeError(f"tools/call answered HTTP {r.status_code} ({r.headers.get('content-type')})")
        doc = json.loads(data)
        if "result" not in doc or doc["result"].get("isError"):
            raise RuntimeError(f"tools/call failed: {str(doc)[:200]}")
        return doc["result"]

    async def aclose(self) -> None:
        self.pool.close()


async def main(
    calls: int,
    levels: list[int],
    upstream_workers: int = 1,
    upstream_kind: str = "python",
    replicas: int = 1,
    client: str = "sdk",
    paths: tuple[str, ...] = ("mcp", "nats"),
    extra_env: dict[str, dict[str, str]] | None = None,
) -> None:
    load0 = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="warden-bench-"))
    cfg = StackConfig(
        data_dir=tmp,
        root="bench" + secrets.token_hex(3),
        nats_url=os.environ.get("NATS_URL"),
        database_url=None,
        ports={n: free_port() for n, _, _ in SERVICES},
        log_level="warning",
        extra_env=extra_env or {},
    )
    dsn_admin = os.environ.get("DATABASE_URL")
    await use_fresh_database(cfg, dsn_admin)
    stack = Stack(cfg, progress=lambda m: print(f"  · {m}", flush=True))
    up_port = free_port()
    upstream = subprocess.Popen(_upstream_argv(upstream_kind, up_port, upstream_workers))
    extra: list[tuple[str, subprocess.Popen[bytes], int]] = []
    try:
        await stack.start()
        extra = _start_replicas(stack, cfg, replicas)
        for _, proc, port in extra:
            await _wait_ready(f"http://127.0.0.1:{port}", proc)
        proxy_urls = [stack.urls["proxy"], *(f"http://127.0.0.1:{port}" for _, _, port in extra)]
        await _wait_port(up_port)
        up_url = f"http://127.0.0.1:{up_port}/mcp"
        admin = {"Authorization": f"Bearer {stack.admin_token}"}
        async with httpx.AsyncClient(headers=admin, timeout=30) as h:
            r = await h.post(
                f"{stack.urls['connectors']}/v1/connectors",
                json={"name": "bench", "url": up_url, "auth": {"type": "none"}},
            )
            r.raise_for_status()
            (await h.post(f"{stack.urls['registry']}/v1/connectors/bench/tools", json={})).raise_for_status()
            (await h.post(f"{stack.urls['registry']}/v1/profiles", json={"name": "demo"})).raise_for_status()
            (
                await h.post(
                    f"{stack.urls['registry']}/v1/profiles/demo/grants", json={"tool": "bench__*", "reason": "bench"}
                )
            ).raise_for_status()
            key = (
                await h.post(f"{stack.urls['proxy']}/v1/agent-keys", json={"name": "bench", "profile": "demo"})
            ).json()["key"]
        warden_pids = {p.name: p.popen.pid for p in stack.procs if p.name != "nats"}
        warden_pids.update({name: proc.pid for name, proc, _ in extra})
        # not Warden, shown beside it: the upstream (with its workers) and this load generator
        other_pids = {"upstream": upstream.pid, "generator": os.getpid(), **_infra_pids(stack)}
        nats_kw: dict[str, Any] = {}
        if stack.passwords:
            nats_kw = {"user": "demo-service", "password": stack.passwords["demo-service"]}

        rows = []
        splits: list[tuple[int, str, dict[str, float]]] = []
        for n in levels:
            exits = AsyncExitStack()

            async def mcp_clients(urls: list[str], headers: dict[str, str]) -> list[Any]:
                out: list[Any] = []
                for i in range(n):  # round-robin over the URLs (one per proxy replica)
                    if client == "raw":
                        raw = _RawMcp(urls[i % len(urls)], headers, modern=urls is not direct_urls)
                        exits.push_async_callback(raw.aclose)
                        out.append(raw)
                        continue
                    http = httpx2.AsyncClient(headers=headers, timeout=60)
                    transport = streamable_http_client(urls[i % len(urls)], http_client=http)
                    out.append(await exits.enter_async_context(Client(transport)))
                return out

            direct_urls = [up_url]
            direct = await mcp_clients(direct_urls, {})
            proxied = await mcp_clients([f"{u}/mcp" for u in proxy_urls], {"Authorization": f"Bearer {key}"})
            warden = WardenClient(nats_url=stack.nats_url, profile="demo", root=cfg.root, **nats_kw)
            await warden.connect()
            # warm up every path (sessions, caches, credential) on every replica
            for c in direct:
                await c.call_tool("echo", {"text": "hi"})
            # the node upstream's JIT takes a few hundred calls to settle: the baseline is measured warm
            await _measure([lambda c=c: c.call_tool("echo", {"text": "hi"}) for c in direct], min(calls, 1000))
            for c in proxied:  # each client is bound to one replica
                await c.call_tool("bench__echo", {"text": "hi"})
            await asyncio.gather(*(warden.call("bench__echo", {"text": "hi"}) for _ in range(8 * len(proxy_urls))))

            res: dict[str, tuple[list[float], float, float]] = {}
            for label, workers in (
                ("direct", [lambda c=c: c.call_tool("echo", {"text": "hi"}) for c in direct]),
                ("mcp", [lambda c=c: c.call_tool("bench__echo", {"text": "hi"}) for c in proxied]),
                ("nats", [lambda: warden.call("bench__echo", {"text": "hi"}) for _ in range(n)]),
            ):
                if label != "direct" and label not in paths:
                    continue
                cpu0, busy0 = _cpu({**warden_pids, **other_pids}), _busy_s()
                lat, wall = await _measure(workers, calls)
                cpu1, busy1 = _cpu({**warden_pids, **other_pids}), _busy_s()
                split = {k: (cpu1[k] - cpu0[k]) * 1000 / len(lat) for k in cpu1}
                split["machine"] = (busy1 - busy0) * 1000 / len(lat)
                cpu = sum(v for k, v in split.items() if k in warden_pids)
                if label == "direct":
                    splits.append((n, label, {k: v for k, v in split.items() if k not in warden_pids}))
                res[label] = (lat, wall, cpu)
                if label != "direct":
                    splits.append((n, label, split))
            await exits.aclose()
            await warden.close()
            d50, d99 = _pct(res["direct"][0], 0.5), _pct(res["direct"][0], 0.99)
            for label in ("direct", *paths):
                lat, wall, cpu = res[label]
                p50, p99 = _pct(lat, 0.5), _pct(lat, 0.99)
                rows.append(
                    (
                        n,
                        label,
                        p50,
                        p99,
                        p50 - d50 if label != "direct" else 0.0,
                        p99 - d99 if label != "direct" else 0.0,
                        len(lat) / wall,
                        cpu,
                        (len(lat) / wall) / (len(res["direct"][0]) / res["direct"][1]),
                    )
                )
        print()
        print(f"proxy overhead, {calls} calls per cell, echo tool, everything on this machine ({os.cpu_count()} cores)")
        load1 = os.getloadavg()
        print(
            f"load average at start {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f}, "
            f"at end {load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f}; upstream: {upstream_kind} "
            f"x{upstream_workers}; proxy replicas: {replicas}; MCP client: {client}"
            + "".join(f"; {svc}: {k}={v}" for svc, kv in (extra_env or {}).items() for k, v in kv.items())
        )
        print(
            f"{'conc':>4} {'path':<7} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8} "
            f"{'calls/s':>9} {'warden cpu ms/call':>19} {'thrpt vs direct':>16}"
        )
        for n, label, p50, p99, a50, a99, cps, cpu, ratio in rows:
            print(
                f"{n:>4} {label:<7} {p50:>8.2f} {p99:>8.2f} {a50:>8.2f} {a99:>8.2f} {cps:>9.0f} "
                f"{cpu if label != 'direct' else 0:>19.2f} {ratio:>15.2f}x"
            )
        print()
        print(
            "where the CPU goes (ms per call, by process; audit ingests every call's events; "
            "upstream, generator, nats and postgres are not Warden; machine: every process and the kernel, "
            "idle excluded)"
        )
        names = [*sorted(warden_pids), *other_pids, "machine"]
        print(f"{'conc':>4} {'path':<7} " + " ".join(f"{x:>11}" for x in names) + f" {'warden':>11}")
        for n, label, split in splits:
            total = sum(v for k, v in split.items() if k in warden_pids)
            cells = " ".join(f"{split.get(x, 0):>11.2f}" for x in names)
            print(f"{n:>4} {label:<7} {cells} {total if label != 'direct' else 0:>11.2f}")
    finally:
        _stop([proc for _, proc, _ in extra])
        stack.stop()
        upstream.terminate()
        upstream.wait(10)
        await clean(cfg, dsn_admin)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument(
        "--upstream",
        choices=("python", "node"),
        default="python",
        help="the echo upstream: the `mcp` package (python) or the official TypeScript SDK (node)",
    )
    ap.add_argument("--upstream-workers", type=int, default=1, help="echo server processes (one port)")
    ap.add_argument("--proxy-replicas", type=int, default=1, help="proxy processes in one queue group")
    ap.add_argument(
        "--client",
        choices=("sdk", "raw"),
        default="sdk",
        help="the direct and MCP paths' client: the `mcp` SDK's, or a raw HTTP/1.1 one (cheaper)",
    )
    ap.add_argument("--paths", default="mcp,nats", help="the proxied paths to measure (the direct one always runs)")
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="SERVICE:NAME=VALUE",
        help="a setting for one service of the stack, e.g. audit:WARDEN_AUDIT_LINGER_S=0.05 (repeatable)",
    )
    a = ap.parse_args()
    extra: dict[str, dict[str, str]] = {}
    for item in a.env:
        service, sep, setting = item.partition(":")
        name, eq, value = setting.partition("=")
        if not sep or not eq or service not in {n for n, _, _ in SERVICES} or not name.startswith("WARDEN_"):
            ap.error(f"--env {item!r}: want SERVICE:WARDEN_NAME=VALUE with a service of the stack")
        extra.setdefault(service, {})[name] = value
    paths = tuple(p for p in ("mcp", "nats") if p in a.paths.split(","))
    if not paths:
        ap.error("--paths: mcp, nats or both")
    if a.proxy_replicas < 1 or a.upstream_workers < 1:
        ap.error("--proxy-replicas and --upstream-workers must be >= 1")
    # the load generator on uvloop, as the proxy is: on two shared cores every µs it spends is
    # taken from the processes measured (the direct path's clients gain the same)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    asyncio.run(
        main(
            a.calls,
            [int(x) for x in a.concurrency.split(",")],
            a.upstream_workers,
            a.upstream,
            a.proxy_replicas,
            a.client,
            paths,
            extra,
        )
    )
