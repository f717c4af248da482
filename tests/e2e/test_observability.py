"""What an SRE sees of one call: the caller's W3C traceparent is honoured and passed on to the
upstream, every stored event of the call carries that trace id (and so do the connectors' and
the proxy's log lines), the proxy writes a log line with the call id (never the token), and
every service's /metrics has the new series afterwards."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from support.admin import admin_client
from support.infra import isolated_stack, wait_for
from support.upstream import header_upstream, trouble_upstream
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e


def _series(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


async def test_one_call_is_traced_logged_and_measured_across_the_services(stack: Stack) -> None:
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    token = "obs-" + os.urandom(12).hex()
    trace_id = os.urandom(16).hex()
    incoming = f"00-{trace_id}-{os.urandom(8).hex()}-01"

    def bearer(h: dict[bytes, bytes]) -> bool:
        return h.get(b"authorization") == f"Bearer {token}".encode()

    async with header_upstream(bearer) as (url, gate), httpx.AsyncClient(timeout=30, headers=admin) as http:

        async def api(method: str, path: str, **kw: Any) -> Any:
            r = await http.request(method, path, **kw)
            assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
            return r.json() if r.content else None

        reg = stack.urls["registry"]
        await api(
            "POST",
            f"{stack.urls['connectors']}/v1/connectors",
            json={"name": "obs", "url": url, "auth": {"type": "bearer", "token": token}},
        )
        await api("POST", f"{reg}/v1/connectors/obs/discover")
        await api("POST", f"{reg}/v1/connectors/obs/tools", json={"tools": [{"name": "echo"}]})
        await api("POST", f"{reg}/v1/profiles", json={"name": "obs", "description": "observability"})
        await api("POST", f"{reg}/v1/profiles/obs/grants", json={"tool": "obs__echo", "reason": "e2e"})
        key = (await api("POST", f"{stack.urls['proxy']}/v1/agent-keys", json={"name": "obs", "profile": "obs"}))["key"]

        # an MCP client that sends its own trace context with every request
        before = len(gate.seen)
        agent = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}", "traceparent": incoming}, timeout=30)
        async with Client(streamable_http_client(f"{stack.urls['proxy']}/mcp", http_client=agent)) as client:
            result = await client.call_tool("obs__echo", {"text": "traced"})
            assert not result.is_error
            found = await client.call_tool("tool_search", {"query": "echo"})
            assert not found.is_error
        await agent.aclose()

        # the upstream's tools/call request carried a traceparent of the caller's trace
        calls = [h for h in gate.seen[before:] if h.get(b"traceparent")]
        assert calls, "no request to the upstream carried a traceparent"
        assert all(h[b"traceparent"].decode().split("-")[1] == trace_id for h in calls)

        # every event of the call is stored with that trace id
        async def call_events() -> list[dict[str, Any]] | None:
            page = await api("GET", f"{stack.urls['audit']}/v1/events", params={"type": "call.completed", "limit": 100})
            done = [e for e in page["items"] if e["refs"]["tool"] == "obs__echo"]
            if not done:
                return None
            cid = done[0]["refs"]["call_id"]
            history = (await api("GET", f"{stack.urls['audit']}/v1/events", params={"call_id": cid}))["items"]
            return history if len(history) >= 2 else None

        history = await wait_for(call_events, timeout=30)
        assert {e["trace_id"] for e in history} == {trace_id}
        call_id = history[0]["refs"]["call_id"]

        # /metrics of each service has the new series
        series = {name: _series((await http.get(f"{u}/metrics")).text) for name, u in stack.urls.items()}
        assert {
            "warden_proxy_call_duration_seconds_bucket",
            "warden_nats_request_duration_seconds_bucket",
            "warden_nats_rtt_seconds",
        } <= series["proxy"], series["proxy"]
        assert {
            "warden_connectors_credential_requests_total",
            "warden_nats_handle_duration_seconds_bucket",
        } <= series["connectors"]
        assert {
            "warden_registry_search_duration_seconds_bucket",
            "warden_registry_search_index_tools",
            "warden_nats_handle_duration_seconds_bucket",
        } <= series["registry"]
        assert "warden_nats_rtt_seconds" in series["audit"]
        proxy_metrics = (await http.get(f"{stack.urls['proxy']}/metrics")).text
        assert (
            'warden_proxy_call_duration_seconds_count{connector="obs",outcome="ok",tool="obs__echo"}' in proxy_metrics
        )
        conn_metrics = (await http.get(f"{stack.urls['connectors']}/metrics")).text
        assert 'warden_connectors_credential_requests_total{connector="obs",outcome="ok"}' in conn_metrics

    # structured logs: the proxy wrote the call's line with its call id and trace id; no token anywhere
    def lines(name: str) -> list[dict[str, Any]]:
        proc = next(p for p in stack.procs if p.name == name)
        out = []
        for raw in proc.log_path.read_text(errors="replace").splitlines():
            assert token not in raw, f"token leaked into the {name} log"
            if raw.startswith("{"):
                out.append(json.loads(raw))
        return out

    proxy_lines = [x for x in lines("proxy") if x.get("call_id") == call_id]
    assert proxy_lines, "the proxy wrote no log line for the call"
    assert all(x["trace_id"] == trace_id for x in proxy_lines)
    assert any("obs__echo" in x["msg"] and "ok" in x["msg"] for x in proxy_lines)
    for name in ("connectors", "registry", "audit"):
        lines(name)


async def test_calls_at_their_upstream_are_counted_while_they_run(stack: Stack) -> None:
    """`warden_proxy_upstream_calls_in_flight`, what the proxy's HPA can scale on
    (deploy/components/calls-in-flight-hpa), is up by one while a call runs upstream and back after."""
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c, _, key = await admin.setup(up.url, up.token)

        async def in_flight() -> float:
            text = (await admin.http.get(f"{stack.urls['proxy']}/metrics")).text
            (line,) = [x for x in text.splitlines() if x.startswith("warden_proxy_upstream_calls_in_flight ")]
            return float(line.split()[-1])

        # no call of an earlier test still upstream: the count is this test's alone
        await wait_for(lambda: _is(in_flight, 0), timeout=60, interval=0.2)
        before = 0.0
        async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {key}"}) as http:
            call = asyncio.create_task(
                http.post(
                    f"{stack.urls['proxy']}/v1/tools/{c}__wait_for_release/call", json={"arguments": {"key": "k"}}
                )
            )
            try:
                await wait_for(lambda: _is(in_flight, before + 1), timeout=30)
            finally:
                up.trouble.release.set()
            r = await call
            assert r.status_code == 200, r.text
        await wait_for(lambda: _is(in_flight, before), timeout=10)


async def _is(read: Any, want: float) -> bool:
    return await read() == want


async def test_calls_held_for_approval_are_counted_while_they_wait(stack: Stack) -> None:
    """`warden_proxy_approvals_waiting` (the dashboard's approval queue) counts a held call and
    drops it when an admin decides."""
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c, [{"name": "record", "auto_approve": False}])
        key = await admin.key(await admin.profile([f"{c}__record"]))

        async def waiting() -> float:
            return await _gauge(admin, stack.urls["proxy"], "warden_proxy_approvals_waiting")

        # no call of an earlier test still held (the stack's approvals time out in 10 s)
        await wait_for(lambda: _is(waiting, 0), timeout=60, interval=0.2)
        before = 0.0
        async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {key}"}) as http:
            call = asyncio.create_task(
                http.post(f"{stack.urls['proxy']}/v1/tools/{c}__record/call", json={"arguments": {"key": "held"}})
            )
            await wait_for(lambda: _is(waiting, before + 1), timeout=30)

            async def pending() -> list[dict[str, Any]]:
                items = await admin.req("GET", "proxy", "/v1/approvals", params={"status": "pending"})
                return [a for a in items if a["tool"] == f"{c}__record"]

            (held,) = await wait_for(pending, timeout=10)
            await admin.req("POST", "proxy", f"/v1/approvals/{held['id']}/approve")
            assert (await call).status_code == 200
        await wait_for(lambda: _is(waiting, before), timeout=10)


async def test_a_connector_needing_attention_is_flagged_in_the_metrics_until_it_is_removed(
    nats_url: str, admin_dsn: str, tmp_path: Path
) -> None:
    """`warden_connectors_needing_attention{connector}` (the WardenConnectorsNeedAttention alert):
    1 for a static connector whose key has expired, gone once the connector is removed. A stack of
    its own: the gauge names at most 200 connectors, and the shared one collects many."""
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    env = {"connectors": {"WARDEN_CONNECTORS_ATTENTION_SCAN_S": "0.5"}}
    async with (
        isolated_stack(nats_url, admin_dsn, tmp_path / "warden", env) as stack,
        trouble_upstream() as up,
        admin_client(stack) as admin,
    ):
        c = await admin.connector(up.url, up.token, expires_at=past)
        fine = await admin.connector(up.url, up.token)
        series = f'warden_connectors_needing_attention{{connector="{c}"}}'

        async def flagged() -> bool:
            text = (await admin.http.get(f"{stack.urls['connectors']}/metrics")).text
            return any(line.startswith(series + " 1.0") for line in text.splitlines())

        assert await wait_for(flagged, timeout=30, interval=0.2)
        text = (await admin.http.get(f"{stack.urls['connectors']}/metrics")).text
        assert f'connector="{fine}"' not in text
        await admin.req("DELETE", "connectors", f"/v1/connectors/{c}")

        async def cleared() -> bool:
            return not await flagged()

        assert await wait_for(cleared, timeout=30, interval=0.2)


async def _gauge(admin: Any, base: str, name: str) -> float:
    text = (await admin.http.get(f"{base}/metrics")).text
    (line,) = [x for x in text.splitlines() if x.startswith(name + " ")]
    return float(line.split()[-1])
