"""Executions: a call's events assemble into one row, in any arrival order; arguments and
results pass the redaction rules (keep, hash, drop, drop everything)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from audit_support import Audit, event, wait_for
from warden_audit.redaction import DROPPED
from warden_common.bus import Bus
from warden_common.contracts import Actor, EventRefs


async def _execution(audit: Audit, call_id: str, events: int) -> dict[str, Any] | None:
    async with audit.client() as c:
        r = await c.get(f"/v1/executions/{call_id}")
    if r.status_code == 404:
        return None
    body = r.json()
    return body if body["event_count"] >= events else None


def _call(tool: str, call_id: str, *, arguments: dict[str, Any], result: dict[str, Any]) -> list[Any]:
    t0 = datetime.now(UTC)
    refs = EventRefs(tool=tool, connector="conn", profile="prof", call_id=call_id, user="u1")
    agent = Actor(kind="agent", id="agent-1")
    return [
        event("call.requested", actor=agent, refs=refs, status="requested", time=t0, data={"arguments": arguments}),
        event("call.approval_requested", actor=agent, refs=refs, status="pending", time=t0 + timedelta(seconds=1)),
        event(
            "call.approved",
            actor=Actor(kind="admin", id="alice"),
            refs=refs,
            status="approved",
            time=t0 + timedelta(seconds=2),
        ),  # fmt: skip
        event(
            "call.completed",
            actor=agent,
            refs=refs,
            status="ok",
            latency_ms=2500.0,
            time=t0 + timedelta(seconds=3),
            data={"result": result},
        ),  # fmt: skip
    ]


async def test_call_events_assemble_into_one_execution(audit: Audit, bus: Bus, tag: str) -> None:
    call_id = f"exec-{tag}"
    evs = _call(f"plain_{tag}__do", call_id, arguments={"q": "x"}, result={"content": [{"text": "done"}]})
    for ev in evs:
        await bus.publish_event_now(ev)
    x = await wait_for(lambda: _execution(audit, call_id, 4), what="execution assembled")
    assert x["state"] == "completed" and x["status"] == "ok"
    assert x["latency_ms"] == 2500.0 and x["approver"] == "alice"
    assert x["arguments"] == {"q": "x"} and x["result"] == {"content": [{"text": "done"}]}
    assert x["actor"] == {"kind": "agent", "id": "agent-1"} and x["user"] == "u1"
    assert [e["type"] for e in x["events"]] == [
        "call.requested",
        "call.approval_requested",
        "call.approved",
        "call.completed",
    ]
    async with audit.client() as c:
        page = (await c.get("/v1/executions", params={"tool": f"plain_{tag}__*"})).json()
    assert [i["call_id"] for i in page["items"]] == [call_id]


async def test_execution_assembles_when_events_arrive_out_of_order(audit: Audit, bus: Bus, tag: str) -> None:
    call_id = f"ooo-{tag}"
    evs = _call(f"ooo_{tag}__do", call_id, arguments={"a": 1}, result={"r": 2})
    await bus.publish_event_now(evs[3])  # completed first, in its own batch
    await wait_for(lambda: _execution(audit, call_id, 1), what="first event")
    for ev in evs[:3]:
        await bus.publish_event_now(ev)
    x = await wait_for(lambda: _execution(audit, call_id, 4), what="all events")
    assert x["state"] == "completed" and x["status"] == "ok"
    assert x["arguments"] == {"a": 1} and x["result"] == {"r": 2}
    assert x["requested_at"] < x["finished_at"]


async def test_denied_and_failed_calls(audit: Audit, bus: Bus, tag: str) -> None:
    refs = EventRefs(tool=f"deny_{tag}__x", call_id=f"deny-{tag}")
    await bus.publish_event_now(event("call.requested", refs=refs, status="requested", data={"arguments": {}}))
    await bus.publish_event_now(
        event("call.denied", refs=refs, status="denied", data={"error_code": "forbidden", "reason": "no grant"})
    )
    refs2 = EventRefs(tool=f"fail_{tag}__x", call_id=f"fail-{tag}")
    await bus.publish_event_now(event("call.requested", refs=refs2, status="requested", data={"arguments": {}}))
    await bus.publish_event_now(
        event(
            "call.failed", refs=refs2, status="error", latency_ms=12.0, data={"error_code": "timeout", "reason": "slow"}
        )
    )
    d = await wait_for(lambda: _execution(audit, f"deny-{tag}", 2), what="denied call")
    f = await wait_for(lambda: _execution(audit, f"fail-{tag}", 2), what="failed call")
    # the proxy sends `error_code` (a key named exactly `code` is scrubbed: it could be an OAuth code)
    assert (d["state"], d["status"], d["error"]["reason"]) == ("denied", "denied", "no grant")
    assert d["error"]["error_code"] == "forbidden"
    assert (f["state"], f["status"], f["error"]["reason"], f["latency_ms"]) == ("failed", "error", "slow", 12.0)
    async with audit.client() as c:
        page = (await c.get("/v1/executions", params={"status": "error", "tool": f"fail_{tag}__*"})).json()
    assert [i["call_id"] for i in page["items"]] == [f"fail-{tag}"]


async def test_redaction_keep_hash_drop_per_field(audit: Audit, bus: Bus, tag: str) -> None:
    call_id = f"red-{tag}"
    args = {"title": "hello", "email": "bob@example.com", "body": "private text", "other": {"email": "x@y.z"}}
    for ev in _call(f"redact_fields__{tag}", call_id, arguments=args, result={"body": "secret body", "n": 1}):
        await bus.publish_event_now(ev)
    x = await wait_for(lambda: _execution(audit, call_id, 4), what="execution")
    digest = "sha256:" + hashlib.sha256(json.dumps("bob@example.com").encode()).hexdigest()
    assert x["arguments"] == {
        "title": "hello",
        "email": digest,
        "other": {"email": "sha256:" + hashlib.sha256(json.dumps("x@y.z").encode()).hexdigest()},
    }
    assert x["result"] == {"n": 1}
    # the stored events carry the same redacted payload; the raw values are nowhere
    rows = await audit.sql("SELECT data::text AS d FROM events WHERE call_id = $1", call_id)
    text = " ".join(r["d"] for r in rows)
    assert "bob@example.com" not in text and "private text" not in text and "secret body" not in text


async def test_redaction_drop_everything_for_a_tool(audit: Audit, bus: Bus, tag: str) -> None:
    call_id = f"drop-{tag}"
    for ev in _call(f"redact_drop__{tag}", call_id, arguments={"a": "confidential"}, result={"r": "confidential"}):
        await bus.publish_event_now(ev)
    x = await wait_for(lambda: _execution(audit, call_id, 4), what="execution")
    assert x["arguments"] == DROPPED and x["result"] == DROPPED
    rows = await audit.sql("SELECT data::text AS d FROM events WHERE call_id = $1", call_id)
    assert all("confidential" not in r["d"] for r in rows)


async def test_redaction_allowlist_drops_unlisted_fields(audit: Audit, bus: Bus, tag: str) -> None:
    call_id = f"allow-{tag}"
    for ev in _call(f"redact_allow__{tag}", call_id, arguments={"query": "roadmap", "cursor": "abc"}, result={}):
        await bus.publish_event_now(ev)
    x = await wait_for(lambda: _execution(audit, call_id, 4), what="execution")
    assert x["arguments"] == {"query": "roadmap"}


async def test_unknown_execution_is_404(audit: Audit) -> None:
    async with audit.client() as c:
        r = await c.get("/v1/executions/nope-nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
