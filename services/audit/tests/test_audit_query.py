"""Reading: filters, keyset pages, NDJSON/CSV export, the admin token."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from audit_support import Audit, event, wait_for
from warden_common.bus import Bus
from warden_common.contracts import Actor, EventRefs


async def _seed(audit: Audit, bus: Bus, tag: str) -> list[Any]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    evs = []
    for i in range(60):
        tool = f"notion_{tag}__search" if i % 2 else f"github_{tag}__issue"
        evs.append(
            event(
                "call.completed" if i % 3 else "call.failed",
                time=t0 + timedelta(minutes=i),
                actor=Actor(kind="agent", id=f"agent-{i % 4}"),
                refs=EventRefs(tool=tool, connector=tool.split("__")[0], profile=f"p{i % 5}", call_id=f"{tag}-{i}"),
                status="ok" if i % 3 else "error",
                data={"note": f"needle-{tag}" if i == 7 else "hay", "i": i},
            )
        )
    for ev in evs:
        await bus.publish_event_now(ev)

    async def stored() -> bool:
        return (await audit.sql("SELECT count(*) FROM events WHERE call_id LIKE $1", f"{tag}-%"))[0][0] == 60

    await wait_for(stored, what="seed stored")
    return evs


async def _get(audit: Audit, path: str, **params: Any) -> Any:
    async with audit.client() as c:
        r = await c.get(path, params={k: v for k, v in params.items() if v is not None})
    assert r.status_code == 200, r.text
    return r.json()


async def test_filters_select_the_right_events(audit: Audit, bus: Bus, tag: str) -> None:
    evs = await _seed(audit, bus, tag)

    async def ids(**params: Any) -> set[str]:
        return {e["id"] for e in (await _get(audit, "/v1/events", limit=1000, **params))["items"]}

    notion = {e.id for e in evs if e.refs.tool.startswith("notion")}
    assert await ids(tool=f"notion_{tag}__*") == notion
    assert await ids(tool=f"notion_{tag}__search", status="error") == {
        e.id for e in evs if e.refs.tool.startswith("notion") and e.status == "error"
    }
    assert await ids(connector=f"github_{tag}") == {e.id for e in evs if e.refs.connector == f"github_{tag}"}
    assert await ids(type="call.f*", tool=f"*_{tag}__*") == {e.id for e in evs if e.type == "call.failed"}
    assert await ids(actor="agent:agent-1", tool=f"*_{tag}__*") == {e.id for e in evs if e.actor.id == "agent-1"}
    assert await ids(actor="agent-1", profile="p2", tool=f"*_{tag}__*") == {
        e.id for e in evs if e.actor.id == "agent-1" and e.refs.profile == "p2"
    }
    assert await ids(call_id=f"{tag}-5") == {evs[5].id}
    assert await ids(q=f"needle-{tag}") == {evs[7].id}
    since, until = datetime(2026, 1, 1, 0, 10, tzinfo=UTC), datetime(2026, 1, 1, 0, 20, tzinfo=UTC)
    assert await ids(tool=f"*_{tag}__*", since=since.isoformat(), until=until.isoformat()) == {
        e.id for e in evs if since <= e.time < until
    }
    item = (await _get(audit, "/v1/events", call_id=f"{tag}-5"))["items"][0]
    assert set(item) >= {"id", "type", "source", "time", "trace_id", "actor", "refs", "status", "latency_ms", "data"}
    assert item["refs"] == {
        "connector": f"notion_{tag}",
        "tool": f"notion_{tag}__search",
        "profile": "p0",
        "call_id": f"{tag}-5",
        "user": None,
    }


async def test_keyset_pages_cover_everything_once_newest_first(audit: Audit, bus: Bus, tag: str) -> None:
    evs = await _seed(audit, bus, tag)
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        page = await _get(audit, "/v1/events", tool=f"*_{tag}__*", limit=7, cursor=cursor)
        seen += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 9
    assert [e["id"] for e in seen] == [e.id for e in sorted(evs, key=lambda e: (e.time, e.id), reverse=True)]


async def test_bad_cursor_and_bad_range_are_400(audit: Audit) -> None:
    async with audit.client() as c:
        r1 = await c.get("/v1/events", params={"cursor": "garbage!"})
        r2 = await c.get("/v1/events", params={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"})
    assert r1.status_code == 400 and r1.json()["error"]["code"] == "invalid"
    assert r2.status_code == 400


async def test_export_ndjson_and_csv_stream_every_match(audit: Audit, bus: Bus, tag: str) -> None:
    evs = await _seed(audit, bus, tag)
    async with audit.client() as c:
        r = await c.get("/v1/events/export", params={"tool": f"*_{tag}__*", "format": "ndjson"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.text.splitlines()]
        r2 = await c.get("/v1/events/export", params={"tool": f"*_{tag}__*", "format": "csv", "status": "error"})
        assert r2.status_code == 200 and r2.headers["content-type"].startswith("text/csv")
    assert [e["id"] for e in lines] == [e.id for e in sorted(evs, key=lambda e: (e.time, e.id))]
    rows = list(csv.DictReader(io.StringIO(r2.text)))
    assert {r["id"] for r in rows} == {e.id for e in evs if e.status == "error"}
    assert json.loads(rows[0]["data"])["note"] in ("hay", f"needle-{tag}")


async def test_v1_routes_want_the_admin_token(audit: Audit) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=audit.url) as c:
        for method, path in (
            ("GET", "/v1/events"),
            ("GET", "/v1/events/export"),
            ("GET", "/v1/executions"),
            ("GET", "/v1/executions/x"),
            ("GET", "/v1/tail"),
            ("POST", "/v1/verify"),
        ):
            r = await c.request(method, path, headers={"authorization": "Bearer wrong-token-wrong-token"})
            assert r.status_code == 401, path
        assert (await c.get("/healthz")).status_code == 200
        ready = await c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["ingest"] == "ok"
        assert "warden_audit_consumer_lag" in (await c.get("/metrics")).text
        assert "/v1/events" in (await c.get("/openapi.json")).json()["paths"]
