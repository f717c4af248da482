"""Ingest: exactly once per event id, unknown types kept, bad messages dead-lettered,
secrets never stored."""

from __future__ import annotations

import json

from audit_support import Audit, event, wait_for
from warden_common.bus import Bus
from warden_common.contracts import Actor, EventRefs, events_subject


async def count(audit: Audit, tool: str) -> int:
    return (await audit.sql("SELECT count(*) FROM events WHERE tool = $1", tool))[0][0]


async def test_batch_ingest_stores_each_event_exactly_once(audit: Audit, bus: Bus, tag: str) -> None:
    tool = f"once_{tag}__echo"
    events = [
        event("call.completed", refs=EventRefs(tool=tool, call_id=f"{tag}-{i}"), status="ok", data={"i": i})
        for i in range(400)
    ]
    for ev in events:
        await bus.publish_event_now(ev)
    # the same ids again, past the stream's de-duplication (no Nats-Msg-Id): audit must dedup
    js = bus.nc.jetstream()
    for ev in events[:100]:
        await js.publish(f"{audit.root}.v1.events.proxy.{ev.type}", ev.model_dump_json().encode())
    for ev in events[:20]:
        await bus.publish_event_now(ev)  # and de-duplicated by the stream itself

    await wait_for(lambda: _at_least(audit, tool, 400), what="400 rows")
    await wait_for(audit.drained, what="consumer drained")
    rows = await audit.sql("SELECT id FROM events WHERE tool = $1", tool)
    assert len(rows) == 400
    assert {r["id"] for r in rows} == {e.id for e in events}


async def _at_least(audit: Audit, tool: str, n: int) -> bool:
    return await count(audit, tool) >= n


async def test_unknown_event_types_are_stored(audit: Audit, bus: Bus, tag: str) -> None:
    ev = event("something.brand_new", refs=EventRefs(tool=f"unk_{tag}"), data={"what": "future"})
    await bus.publish_event_now(ev)
    await wait_for(lambda: _at_least(audit, f"unk_{tag}", 1), what="unknown type stored")
    async with audit.client() as c:
        r = await c.get("/v1/events", params={"type": "something.brand_new", "tool": f"unk_{tag}"})
    assert r.status_code == 200
    (item,) = r.json()["items"]
    assert item["id"] == ev.id and item["data"] == {"what": "future"}


async def test_malformed_message_goes_to_dead_letters_and_stream_moves_on(audit: Audit, bus: Bus, tag: str) -> None:
    js = bus.nc.jetstream()
    subject = f"{audit.root}.v1.events.proxy.call.completed"
    await js.publish(subject, b"\xff\xfe not json " + tag.encode())
    await js.publish(subject, json.dumps({"type": "call.completed", "marker": tag}).encode())  # no source, no id
    after = event("call.completed", refs=EventRefs(tool=f"after_{tag}"))
    await bus.publish_event_now(after)

    await wait_for(lambda: _at_least(audit, f"after_{tag}", 1), what="the event after the bad ones")
    rows = await audit.sql(
        "SELECT reason, payload, payload_size, stream_seq FROM dead_letters WHERE payload::text LIKE $1 OR"
        " convert_from(payload, 'UTF8') LIKE $2",
        f"%{tag.encode().hex()}%",
        f"%{tag}%",
    )
    assert len(rows) == 2
    reasons = sorted(r["reason"] for r in rows)
    assert all(r.startswith("not a valid event") for r in reasons)
    assert all(r["stream_seq"] for r in rows)
    async with audit.client() as c:
        r = await c.get("/v1/dead-letters")
    assert any(tag in d["payload"] for d in r.json()["items"])
    await wait_for(audit.drained, what="consumer drained")


async def test_oversized_data_is_capped_not_refused(audit: Audit, bus: Bus, tag: str) -> None:
    cap = audit.settings.event_data_cap_bytes
    ev = event("call.completed", refs=EventRefs(tool=f"big_{tag}"), data={"blob": "x" * (cap + 10)})
    # as an older producer sends it: past the bus's own bound, which would truncate the value
    subject = events_subject(bus.root, ev)
    await bus.nc.jetstream().publish(subject, ev.model_dump_json().encode(), headers={"Nats-Msg-Id": ev.id})
    await wait_for(lambda: _at_least(audit, f"big_{tag}", 1), what="big event stored")
    (row,) = await audit.sql("SELECT data FROM events WHERE id = $1", ev.id)
    data = json.loads(row["data"])
    assert data["_truncated"] is True and data["bytes"] > cap and len(row["data"]) < cap


async def test_awkward_values_are_stored_and_keep_the_chain_verifiable(audit: Audit, bus: Bus, tag: str) -> None:
    data = {"nul": "a\x00b", "big": 1e22, "tiny": 1.5e-9, "neg0": -0.0, "nested": [{"k": 1.0}], "uni": "héllo ✓"}
    ev = event("custom.awkward", refs=EventRefs(tool=f"awk_{tag}"), data=data, latency_ms=1.25)
    await bus.publish_event_now(ev)
    await wait_for(lambda: _at_least(audit, f"awk_{tag}", 1), what="awkward event stored")
    async with audit.client() as c:
        rep = (await c.post("/v1/verify")).json()
    assert rep["ok"], rep


async def test_secret_values_are_stored_nowhere(audit: Audit, bus: Bus, tag: str) -> None:
    secrets_ = [f"sekrit-{tag}-{i}-value" for i in range(6)]
    await bus.publish_event_now(
        event(
            "call.requested",
            actor=Actor(kind="agent", id="a1"),
            refs=EventRefs(tool=f"sec_{tag}__x", call_id=f"sec-{tag}"),
            data={
                "arguments": {
                    "api_key": secrets_[0],
                    "nested": {"password": secrets_[1], "list": [{"access_token": secrets_[2]}]},
                    "Authorization": f"Bearer {secrets_[3]}",
                }
            },
        )
    )
    await bus.publish_event_now(
        event("connector.connected", refs=EventRefs(connector=f"sec-{tag}"), data={"client_secret": secrets_[4]})
    )
    # a message that fails validation never passed the envelope's scrub: the dead letter must not keep it
    js = bus.nc.jetstream()
    await js.publish(
        f"{audit.root}.v1.events.proxy.x", json.dumps({"no": "envelope", "refresh_token": secrets_[5]}).encode()
    )
    await wait_for(lambda: _at_least(audit, f"sec_{tag}__x", 1), what="events stored")
    await wait_for(audit.drained, what="consumer drained")

    tables = await audit.sql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'audit' AND table_type = 'BASE TABLE'"
    )
    found = []
    for t in tables:
        name = t["table_name"]
        rows = await audit.sql(f"SELECT t::text AS row FROM {name} t")
        for r in rows:
            text = r["row"]
            for s in secrets_:
                if s in text or s.encode().hex() in text:
                    found.append((name, s))
    assert found == []
    (ex,) = await audit.sql("SELECT arguments FROM executions WHERE call_id = $1", f"sec-{tag}")
    assert json.loads(ex["arguments"])["api_key"] == "[redacted]"
