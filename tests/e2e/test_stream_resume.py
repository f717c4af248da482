"""SSE resumability (issue 16 item 28): the HTTP call stream's events carry ids and `retry:`,
and a client whose connection dropped mid-call resumes with `Last-Event-ID` (same key only) and
gets what it missed and the rest, result included; an MCP session's GET stream is primed and
resumes with `Last-Event-ID`, replaying the notifications sent while it was away."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from support.admin import admin_client
from support.upstream import trouble_upstream
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e


def _parse(block: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in block.split("\n"):
        if line.startswith(":") or ":" not in line:
            continue
        k, _, v = line.partition(":")
        out[k] = v[1:] if v.startswith(" ") else v
    return out


async def _blocks(r: httpx.Response) -> Any:
    buf = ""
    async for chunk in r.aiter_text():
        buf += chunk.replace("\r\n", "\n")
        while "\n\n" in buf:
            block, buf = buf.split("\n\n", 1)
            ev = _parse(block)
            if ev:
                yield ev


async def test_a_dropped_call_stream_resumes_with_last_event_id(stack: Stack) -> None:
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c, [{"name": "wait_for_release", "auto_approve": True}])
        p = await admin.profile([f"{c}__wait_for_release"])
        key = await admin.key(p)
        other = await admin.key(p)
        proxy = stack.urls["proxy"]
        auth = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(timeout=60, trust_env=False) as http:
            async with http.stream(
                "POST",
                f"{proxy}/v1/tools/{c}__wait_for_release/call/stream",
                json={"arguments": {"key": "k1"}},
                headers=auth,
            ) as r:
                assert r.status_code == 200
                async for first in _blocks(r):
                    break  # the connection drops after the first event
            assert first["event"] == "started" and first["id"] == "1" and int(first["retry"]) > 0
            stream = json.loads(first["data"])["stream"]
            resume = f"{proxy}/v1/calls/{stream}/stream"

            # another key, an unknown stream, a malformed id: refused
            r = await http.get(resume, headers={"Authorization": f"Bearer {other}", "Last-Event-ID": "1"})
            assert r.status_code == 404
            r = await http.get(f"{proxy}/v1/calls/{'0' * 32}/stream", headers=auth)
            assert r.status_code == 404
            r = await http.get(resume, headers={**auth, "Last-Event-ID": "x"})
            assert r.status_code == 400

            # the call went on while nobody listened; the resumed stream carries the rest
            async with http.stream("GET", resume, headers={**auth, "Last-Event-ID": "1"}) as r:
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
                up.trouble.release.set()
                rest = [ev async for ev in _blocks(r)]
            assert [e["event"] for e in rest] == ["result"] and int(rest[0]["id"]) > 1
            result = json.loads(rest[0]["data"])
            assert result["content"][0]["text"] == "released k1" and result["is_error"] is False

            # after the result it can still be read again, from the start
            async with http.stream("GET", resume, headers=auth) as r:
                again = [ev["event"] async for ev in _blocks(r)]
            assert again == ["started", "result"]
        assert up.trouble.executions == {"k1": 1}


def _rpc(method: str, params: dict[str, Any], rid: int | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if rid is not None:
        msg["id"] = rid
    return msg


async def _post(http: httpx.AsyncClient, url: str, headers: dict[str, str], msg: dict[str, Any]) -> list[Any]:
    """POST one message; the SSE events of its answer (all of them, priming included)."""
    async with http.stream("POST", url, json=msg, headers=headers) as r:
        assert r.status_code in (200, 202), await r.aread()
        if r.status_code == 202:
            return []
        if r.headers["content-type"].startswith("application/json"):
            return [{"data": (await r.aread()).decode()}]
        return [ev async for ev in _blocks(r)]


async def _first_resumed(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], last_event_id: str
) -> dict[str, Any]:
    """The first event with data on the session's GET stream resumed after `last_event_id`."""
    async with (
        asyncio.timeout(20),
        http.stream(
            "GET", url, headers={**headers, "Accept": "text/event-stream", "Last-Event-ID": last_event_id}
        ) as r,
    ):
        assert r.status_code == 200
        async for ev in _blocks(r):
            if ev.get("data"):
                return dict(ev)
    raise AssertionError("the resumed stream ended without an event")


async def test_an_mcp_sessions_get_stream_is_primed_and_resumes_with_last_event_id(stack: Stack) -> None:
    from support.upstream import catalog_upstream

    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    catalog = {"find_orders": {"description": "Find orders", "input_schema": schema}}
    async with catalog_upstream(catalog) as cat, admin_client(stack) as admin:
        c = await admin.connector(cat.url, None)
        await admin.register(c, [{"name": "find_orders", "deferred": True}])
        key = await admin.key(await admin.profile([f"{c}__*"]))
        url = f"{stack.urls['proxy']}/mcp"
        version = "2025-11-25"
        h = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
        async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
            async with http.stream(
                "POST",
                url,
                headers=h,
                json=_rpc(
                    "initialize",
                    {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
                    1,
                ),
            ) as r:
                assert r.status_code == 200
                sid = r.headers["mcp-session-id"]
                opened = [ev async for ev in _blocks(r)]
            # the POST stream is primed (an id, empty data, retry) before the answer
            assert opened[0]["id"] and opened[0]["data"] == "" and int(opened[0]["retry"]) > 0
            assert json.loads(opened[-1]["data"])["result"]["protocolVersion"] == version
            h = {**h, "mcp-session-id": sid, "mcp-protocol-version": version}
            await _post(http, url, h, _rpc("notifications/initialized", {}))

            # the GET stream starts with a priming event; the client drops it
            async with http.stream("GET", url, headers={**h, "Accept": "text/event-stream"}) as r:
                assert r.status_code == 200
                async for priming in _blocks(r):
                    break
            assert priming["id"] and priming["data"] == "" and int(priming["retry"]) > 0

            # while it is away, tool_search unlocks a tool: list_changed goes to the GET stream
            found = await _post(
                http, url, h, _rpc("tools/call", {"name": "tool_search", "arguments": {"query": "orders"}}, 2)
            )
            assert f"{c}__find_orders" in found[-1]["data"]

            # resuming from the priming event replays what it missed
            missed = await _first_resumed(http, url, h, priming["id"])
            assert json.loads(missed["data"])["method"] == "notifications/tools/list_changed"
            assert int(missed["id"]) > int(priming["id"])

            # another session cannot replay this one's events
            async with http.stream(
                "POST",
                url,
                headers={k: v for k, v in h.items() if k not in ("mcp-session-id", "mcp-protocol-version")},
                json=_rpc(
                    "initialize",
                    {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
                    1,
                ),
            ) as r:
                other = r.headers["mcp-session-id"]
                _ = [ev async for ev in _blocks(r)]
            h2 = {**h, "mcp-session-id": other}
            await _post(http, url, h2, _rpc("notifications/initialized", {}))
            async with (
                asyncio.timeout(20),
                http.stream(
                    "GET", url, headers={**h2, "Accept": "text/event-stream", "Last-Event-ID": priming["id"]}
                ) as r,
            ):
                replayed = [ev async for ev in _blocks(r) if ev.get("data")]
            assert replayed == []


async def test_an_mcp_call_whose_post_stream_dropped_resumes_to_its_result(stack: Stack) -> None:
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c, [{"name": "wait_for_release", "auto_approve": True}])
        key = await admin.key(await admin.profile([f"{c}__*"]))
        url = f"{stack.urls['proxy']}/mcp"
        version = "2025-11-25"
        h = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
        init = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
        async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
            async with http.stream("POST", url, headers=h, json=_rpc("initialize", init, 1)) as r:
                sid = r.headers["mcp-session-id"]
                _ = [ev async for ev in _blocks(r)]
            h = {**h, "mcp-session-id": sid, "mcp-protocol-version": version}
            await _post(http, url, h, _rpc("notifications/initialized", {}))
            call = _rpc("tools/call", {"name": f"{c}__wait_for_release", "arguments": {"key": "m1"}}, 2)
            async with http.stream("POST", url, headers=h, json=call) as r:
                async for priming in _blocks(r):
                    break  # dropped after the priming event, before the result
            assert priming["id"] and priming["data"] == ""
            up.trouble.release.set()
            answer = json.loads((await _first_resumed(http, url, h, priming["id"]))["data"])
            assert answer["id"] == 2 and answer["result"]["content"][0]["text"] == "released m1"
        assert up.trouble.executions == {"m1": 1}


async def test_an_mcp_session_serves_only_the_credential_that_opened_it(stack: Stack) -> None:
    """A session id is not a bearer: another valid agent key that learns it gets 404, as if the
    session did not exist, and cannot resume its streams."""
    async with admin_client(stack) as admin:
        profile = await admin.profile([])
        owner, other = await admin.key(profile), await admin.key(profile)
        url = f"{stack.urls['proxy']}/mcp"
        version = "2025-11-25"
        accept = {"Accept": "application/json, text/event-stream"}
        async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
            async with http.stream(
                "POST",
                url,
                headers={**accept, "Authorization": f"Bearer {owner}"},
                json=_rpc(
                    "initialize",
                    {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
                    1,
                ),
            ) as r:
                assert r.status_code == 200
                sid = r.headers["mcp-session-id"]
                [ev async for ev in _blocks(r)]
            session = {**accept, "mcp-session-id": sid, "mcp-protocol-version": version}
            r = await http.post(
                url, headers={**session, "Authorization": f"Bearer {other}"}, json=_rpc("tools/list", {}, 2)
            )
            assert r.status_code == 404, r.text
            r = await http.get(
                url,
                headers={**session, "Authorization": f"Bearer {other}", "Accept": "text/event-stream",
                         "Last-Event-ID": "0"},
            )  # fmt: skip
            assert r.status_code == 404
            r = await http.post(
                url, headers={**session, "Authorization": f"Bearer {owner}"}, json=_rpc("tools/list", {}, 3)
            )
            assert r.status_code == 200, r.text
