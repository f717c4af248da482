"""SSE resumability (issue 16 item 28): the HTTP call stream's events carry ids and `retry:`,
and a client whose connection dropped mid-call resumes with `Last-Event-ID` (same key only) and
gets what it missed and the rest, result included; an MCP session's GET stream is primed and
resumes with `Last-Event-ID`, replaying the notifications sent while it was away."""

from __future__ import annotations

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
