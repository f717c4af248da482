"""The embedded run's own NATS, with one user per service and per internal service, each with
its own reply inbox: the whole stack works under those permissions (the demo bootstrap, an
MCP call, an internal service's NATS call), and an internal service that listens everywhere
it can hears nothing of the others' replies — no credential, no registry answer."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import nats
import pytest
from support.infra import fresh_database
from warden_cli.embedded import SERVICES, Stack, StackConfig, free_port
from warden_cli.natsconf import DEMO_SERVICE
from warden_cli.run import _bootstrap, _wait_port
from warden_client import WardenClient

pytestmark = pytest.mark.e2e


async def test_the_embedded_stack_runs_under_per_user_inboxes_and_nobody_overhears(
    admin_dsn: str, tmp_path: Path
) -> None:
    async with fresh_database(admin_dsn) as dsn:
        cfg = StackConfig(
            data_dir=tmp_path,
            root="embu",
            nats_url=None,  # the embedded NATS server, with its users and permissions
            nats_port=free_port(),
            database_url=dsn,
            ports={n: free_port() for n, _, _ in SERVICES},
            log_level="warning",
        )
        stack = Stack(cfg)
        try:
            await stack.start()
            assert stack.passwords, "the embedded NATS has per-service users"
            demo_port = free_port()
            stack._spawn(
                "demo-mcp",
                [sys.executable, "-m", "warden_cli.demo_server", "--port", str(demo_port)],
                {"WARDEN_DEMO_TOKEN": "demo-token-0123456789abcdef"},
            )
            await _wait_port(demo_port, stack)

            # an internal service listens wherever it may and tries where it may not
            seen: list[str] = []
            errors: list[str] = []

            async def spy(m):  # type: ignore[no-untyped-def]
                seen.append(m.subject)

            async def err(e: Exception) -> None:
                errors.append(str(e))

            nc = await nats.connect(
                stack.nats_url,
                user=DEMO_SERVICE,
                password=stack.passwords[DEMO_SERVICE],
                error_cb=err,
                allow_reconnect=False,
                inbox_prefix=f"_INBOX_{DEMO_SERVICE}",
            )
            for s in ("_INBOX.>", "_INBOX_proxy.>", "_INBOX_registry.>", "_INBOX_connectors.>", ">"):
                await nc.subscribe(s, cb=spy)
            await nc.flush(timeout=2)

            # the bootstrap runs discovery (registry -> proxy -> upstream) and registration
            key = await _bootstrap(stack, f"http://127.0.0.1:{demo_port}/mcp", "demo-token-0123456789abcdef")
            async with httpx.AsyncClient(timeout=30) as http:
                r = await http.post(
                    f"{stack.urls['proxy']}/v1/tools/demo__echo/call",
                    headers={"Authorization": f"Bearer {key}"},
                    json={"arguments": {"text": "hello"}},
                )
                assert r.status_code == 200, r.text
                assert "hello" in r.text
            async with WardenClient(
                nats_url=stack.nats_url,
                profile="demo",
                root=cfg.root,
                user=DEMO_SERVICE,
                password=stack.passwords[DEMO_SERVICE],
            ) as warden:
                res = await warden.call("demo__echo", {"text": "over nats"})
            assert not res.is_error and res.content[0]["text"] == "over nats"
            await nc.flush(timeout=2)
            await asyncio.sleep(0)
            assert seen == [], seen
            assert sum("permissions violation for subscription" in e.lower() for e in errors) == 5, errors
            await nc.close()

            # the registry's own durable consumer of connector.removed works under its permissions
            admin = {"Authorization": f"Bearer {stack.admin_token}"}
            async with httpx.AsyncClient(timeout=30, headers=admin) as http:
                r = await http.delete(f"{stack.urls['connectors']}/v1/connectors/demo")
                assert r.status_code == 200 and r.json()["removed"] == "demo", r.text
                async with asyncio.timeout(30):
                    while (await http.get(f"{stack.urls['registry']}/v1/tools", params={"connector": "demo"})).json():
                        await asyncio.sleep(0.1)
        finally:
            stack.stop()
