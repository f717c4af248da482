"""No service looks up a name it was not configured with (issue 16, item 0).

Each service process of a real stack runs with an LD_PRELOAD shim (tests/support/dnslog.c,
built here with `cc`) that logs every name given to the resolver. The stack does real work
(discovery from a real MCP upstream, tool_search through the registry's embedder, a call),
then the logs must hold only the names of NATS, Postgres, the services' own addresses and the
upstream. onnxruntime's 1DS telemetry client, in the registry, used to look up
mobile.events.data.microsoft.com some seconds after its first session (about 7 s here), so
the stack is watched for a while after the registry is up: the watch ends at once when a
name outside the set appears, else after `WATCH_S`.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support.admin import admin_client, agent
from support.infra import isolated_stack, wait_for
from support.upstream import bearer_upstream
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e

SHIM = Path(__file__).resolve().parents[1] / "support" / "dnslog.c"
SERVICES = ("connectors", "registry", "proxy", "audit", "console")
WATCH_S = 20.0  # from the registry's start: the telemetry lookup came after about 7 s


@pytest.fixture
def shim(tmp_path: Path) -> Path:
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (cc) on this machine: the resolver-logging shim cannot be built")
    out = tmp_path / "dnslog.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(out), str(SHIM), "-ldl"], check=True)
    return out


@pytest.fixture
async def logged_stack(
    nats_url: str, admin_dsn: str, tmp_path: Path, shim: Path
) -> AsyncIterator[tuple[Stack, dict[str, Path], float]]:
    logs = {name: tmp_path / f"dns-{name}.log" for name in SERVICES}
    env = {name: {"LD_PRELOAD": str(shim), "DNSLOG_FILE": str(logs[name])} for name in SERVICES}
    started = time.monotonic()
    async with isolated_stack(nats_url, admin_dsn, tmp_path / "stack", env) as st:
        yield st, logs, started


def _names(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {line.split(" ")[2] for line in path.read_text().splitlines() if line.count(" ") >= 3}


async def test_no_service_looks_up_a_name_it_was_not_given(
    logged_stack: tuple[Stack, dict[str, Path], float], nats_url: str, admin_dsn: str
) -> None:
    stack, logs, started = logged_stack
    async with bearer_upstream() as up, admin_client(stack) as admin:
        allowed = {
            "127.0.0.1",  # the services' own addresses and the loopback upstream
            "localhost",
            urlsplit(nats_url).hostname,
            urlsplit(admin_dsn).hostname,
            urlsplit(up.url).hostname,
        }
        c, _, key = await admin.setup(up.url, up.token)
        async with agent(stack, key) as client:
            found = await client.call_tool("tool_search", {"query": "echo a message"})
            assert not found.is_error
            tools = [t.name for t in (await client.list_tools()).tools if t.name.startswith(c)]
            assert tools
        # the registry's embedder ran (hybrid search), so its onnxruntime session is live

        def strays() -> dict[str, set[str]]:
            return {n: got for n in SERVICES if (got := _names(logs[n]) - allowed)}

        async def settled() -> bool:
            return bool(strays()) or time.monotonic() - started > WATCH_S

        await wait_for(settled, timeout=WATCH_S + 30, interval=0.2)
    # the shim is loaded in every service process (so a lookup could not have gone unseen)
    loaded = {p.name: "dnslog.so" in Path(f"/proc/{p.popen.pid}/maps").read_text() for p in stack.procs}
    assert loaded == dict.fromkeys(SERVICES, True)
    stack.stop()  # what a service looks up on its way out counts too
    assert strays() == {}
    assert _names(logs["proxy"]) >= {"127.0.0.1"}  # and it logs: the proxy resolved its upstream
