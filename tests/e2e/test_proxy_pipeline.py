"""The proxy's call pipeline end to end: grants, arguments, upstream trouble, approvals,
disconnects, durable calls — real NATS, Postgres, services and MCP servers."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from mcp.shared.exceptions import MCPError
from support.admin import admin_client, agent
from support.infra import wait_for
from support.upstream import trouble_upstream
from warden_cli.embedded import Stack
from warden_client import WardenClient
from warden_common.contracts import ErrorCode
from warden_common.errors import Forbidden, RemoteError

pytestmark = pytest.mark.e2e


def _text(result) -> str:  # type: ignore[no-untyped-def]
    return " ".join(getattr(c, "text", "") for c in result.content)


async def test_invalid_arguments_get_invalid_params_naming_the_field(stack: Stack) -> None:
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c, _, key = await admin.setup(up.url, up.token)
        async with agent(stack, key) as client:
            with pytest.raises(MCPError) as e:
                await client.call_tool(f"{c}__typed", {"count": "three", "label": "x"})
            assert e.value.code == -32602 and "count" in e.value.message
            ok = await client.call_tool(f"{c}__typed", {"count": 3, "label": "x"})
            assert _text(ok) == "xx3"


async def test_upstream_tool_errors_pass_through_as_is_error(stack: Stack) -> None:
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c, _, key = await admin.setup(up.url, up.token)
        async with agent(stack, key) as client:
            r = await client.call_tool(f"{c}__fail", {"reason": "the widget is broken"})
            assert r.is_error and "the widget is broken" in _text(r)


async def test_upstream_5xx_is_an_actionable_error_and_the_breaker_stops_hammering(stack: Stack) -> None:
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c, _, key = await admin.setup(up.url, up.token)
        async with agent(stack, key) as client:
            assert _text(await client.call_tool(f"{c}__record", {"key": "warm"})) == "warm:1"
            up.trouble.status = 503
            for _ in range(3):
                r = await client.call_tool(f"{c}__record", {"key": "k"})
                assert r.is_error and up.token not in _text(r)
            seen = len(up.gate.seen)
            r = await client.call_tool(f"{c}__record", {"key": "k"})
            assert r.is_error and "stops calling it" in _text(r)
            assert len(up.gate.seen) == seen, "an open breaker must not call upstream"
            # an admin fixes the connector (any config change closes the breaker and the sessions)
            up.trouble.status = None
            await admin.req("PATCH", "connectors", f"/v1/connectors/{c}", json={"timeout_s": 30})

            async def works() -> bool:
                r = await client.call_tool(f"{c}__record", {"key": "after"})
                return not r.is_error

            assert await wait_for(works, timeout=10)


async def test_upstream_401_retries_once_with_a_fresh_credential_then_says_so(stack: Stack) -> None:
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c, _, key = await admin.setup(up.url, up.token)
        async with agent(stack, key) as client:
            assert not (await client.call_tool(f"{c}__record", {"key": "a"})).is_error
            old = up.token
            up.gate.token = up.token = "rotated-" + os.urandom(8).hex()
            r = await client.call_tool(f"{c}__record", {"key": "b"})
            assert r.is_error and "refused Warden's credential" in _text(r)
            assert old not in _text(r) and up.token not in _text(r)
            await admin.req(
                "PATCH", "connectors", f"/v1/connectors/{c}", json={"auth": {"type": "bearer", "token": up.token}}
            )

            async def works() -> bool:
                return not (await client.call_tool(f"{c}__record", {"key": "c"})).is_error

            assert await wait_for(works, timeout=10)


async def test_disconnect_fails_every_call_closed_at_once(stack: Stack) -> None:
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c, _, key = await admin.setup(up.url, up.token)
        async with agent(stack, key) as client:
            assert not (await client.call_tool(f"{c}__record", {"key": "x"})).is_error
            await admin.req("POST", "connectors", f"/v1/connectors/{c}/disconnect")

            async def refused() -> bool:
                r = await client.call_tool(f"{c}__record", {"key": "x"})
                return r.is_error and "disconnected" in _text(r)

            assert await wait_for(refused, timeout=5, interval=0.005)
            before = up.trouble.executions.get("x", 0)
            for _ in range(5):
                r = await client.call_tool(f"{c}__record", {"key": "x"})
                assert r.is_error
            assert up.trouble.executions.get("x", 0) == before


async def test_revoking_a_grant_hides_the_tool_at_once(stack: Stack) -> None:
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c, p, key = await admin.setup(up.url, up.token)
        prof = await admin.req("GET", "registry", f"/v1/profiles/{p}")
        async with agent(stack, key) as client:
            assert f"{c}__record" in [t.name for t in (await client.list_tools()).tools]
            for g in prof["grants"]:
                await admin.req("DELETE", "registry", f"/v1/profiles/{p}/grants/{g['id']}")

            async def gone() -> bool:
                return not (await client.list_tools()).tools

            assert await wait_for(gone, timeout=5, interval=0.01)
            with pytest.raises(MCPError):
                await client.call_tool(f"{c}__record", {"key": "y"})


async def _pending(admin, tool: str) -> dict:  # type: ignore[no-untyped-def]
    async def find():  # type: ignore[no-untyped-def]
        items = await admin.req("GET", "proxy", "/v1/approvals", params={"status": "pending"})
        return next((a for a in items if a["tool"] == tool), None)

    return await wait_for(find, timeout=10)


async def test_held_calls_are_approved_rejected_or_time_out(stack: Stack, nats_url: str) -> None:
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c, [{"name": "record", "auto_approve": False}])
        p = await admin.profile([f"{c}__*"])
        tool = f"{c}__record"
        async with WardenClient(nats_url=nats_url, profile=p, root=stack.cfg.root) as warden:
            # approved: the call completes
            call = asyncio.create_task(warden.call(tool, {"key": "ok"}))
            a = await _pending(admin, tool)
            assert up.trouble.executions.get("ok") is None
            await admin.req("POST", "proxy", f"/v1/approvals/{a['id']}/approve", json={"reason": "fine"})
            assert (await asyncio.wait_for(call, 20)).content[0]["text"] == "ok:1"
            # rejected: a refusal that carries the reason, upstream never called
            call = asyncio.create_task(warden.call(tool, {"key": "no"}))
            a = await _pending(admin, tool)
            await admin.req("POST", "proxy", f"/v1/approvals/{a['id']}/reject", json={"reason": "not today"})
            with pytest.raises(RemoteError) as e:
                await asyncio.wait_for(call, 20)
            assert e.value.code == ErrorCode.approval_rejected and "not today" in e.value.message
            # no decision: a clear timeout (the test stack sets 10 s)
            with pytest.raises(RemoteError) as e:
                await warden.call(tool, {"key": "late"}, timeout_s=30)
            assert e.value.code == ErrorCode.approval_timeout
            assert "no" not in up.trouble.executions and "late" not in up.trouble.executions
            # a decision on an expired approval is refused
            expired = await admin.req("GET", "proxy", "/v1/approvals", params={"status": "expired"})
            await admin.req("POST", "proxy", f"/v1/approvals/{expired[0]['id']}/approve", expect=409)


async def test_nats_calls_for_ungranted_tools_are_refused(stack: Stack, nats_url: str) -> None:
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c)
        p = await admin.profile([f"{c}__record"])
        async with WardenClient(nats_url=nats_url, profile=p, root=stack.cfg.root) as warden:
            assert (await warden.call(f"{c}__record", {"key": "g"})).content[0]["text"] == "g:1"
            with pytest.raises(Forbidden):
                await warden.call(f"{c}__fail", {"reason": "x"})


async def test_durable_call_survives_a_killed_proxy_and_runs_once(stack: Stack, nats_url: str) -> None:
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c, [{"name": "record", "auto_approve": False}])
        p = await admin.profile([f"{c}__*"])
        tool = f"{c}__record"
        async with WardenClient(nats_url=nats_url, profile=p, root=stack.cfg.root) as warden:
            call = asyncio.create_task(
                warden.call_durable(tool, {"key": "d1"}, idempotency_key="order-42", timeout_s=90)
            )
            first = await _pending(admin, tool)
            # kill the proxy while it holds the call, then start it again
            proxy = next(p for p in stack.procs if p.name == "proxy")
            os.killpg(proxy.popen.pid, signal.SIGKILL)
            proxy.popen.wait(10)
            stack.procs.remove(proxy)
            stack.start_service("proxy")
            await stack.wait_ready(["proxy"])
            # the redelivered call finds its stored approval; approving it runs the call once
            again = await _pending(admin, tool)
            assert again["id"] == first["id"]
            await admin.req("POST", "proxy", f"/v1/approvals/{first['id']}/approve")
            result = await asyncio.wait_for(call, 60)
            assert result.content[0]["text"] == "d1:1"
            # the same key again: the stored result, not a second execution
            repeat = await warden.call_durable(tool, {"key": "d1"}, idempotency_key="order-42", timeout_s=30)
            assert repeat.content[0]["text"] == "d1:1"
            assert up.trouble.executions["d1"] == 1


async def test_durable_results_never_cross_between_keys(stack: Stack, nats_url: str) -> None:
    """`job.1` and `job_1` once shared a result subject and each caller took the first result
    there: now the subject is one-to-one with the key and the client checks the key."""
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c)
        p = await admin.profile([f"{c}__*"])
        tool = f"{c}__record"
        async with WardenClient(nats_url=nats_url, profile=p, root=stack.cfg.root) as warden:
            for n in range(3):
                a, b = await asyncio.gather(
                    warden.call_durable(tool, {"key": f"dot{n}"}, idempotency_key=f"job.{n}", timeout_s=30),
                    warden.call_durable(tool, {"key": f"under{n}"}, idempotency_key=f"job_{n}", timeout_s=30),
                )
                assert a.content[0]["text"] == f"dot{n}:1"
                assert b.content[0]["text"] == f"under{n}:1"
