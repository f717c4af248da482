"""Audit logic: turn stored rows into the envelope shape, build filters, live-tail fan-out."""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import json
from datetime import datetime
from typing import Any

from warden_common.errors import BadInput

__all__ = ["Filters", "Tail", "decode_cursor", "encode_cursor", "to_event"]


def to_event(r: Any) -> dict[str, Any]:
    return {
        "id": r["id"],
        "type": r["type"],
        "time": r["time"].isoformat(),
        "source": r["source"],
        "actor": {"kind": r["actor_kind"], "id": r["actor_id"]} if r["actor_kind"] else None,
        "refs": {
            "connector": r["connector"],
            "tool": r["tool"],
            "profile": r["profile"],
            "call_id": r["call_id"],
            "user": r["user_id"],
        },
        "status": r["status"],
        "latency_ms": r["latency_ms"],
        "trace_id": r["trace_id"],
        "data": r["data"],
    }


def encode_cursor(time: datetime, id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([time.isoformat(), id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        t, i = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(t), str(i)
    except (ValueError, TypeError):
        raise BadInput("cursor is not one this API gave out") from None


class Filters:
    """Filters shared by the query API and the live tail. Globs (`notion__*`) on type and tool."""

    def __init__(self, **f: Any) -> None:
        self.f = {k: v for k, v in f.items() if v is not None}

    def sql(self) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        args: list[Any] = []

        def add(expr: str, value: Any) -> None:
            args.append(value)
            where.append(expr.format(f"${len(args)}"))

        for key, col in (("type", "type"), ("tool", "tool"), ("connector", "connector")):
            if key in self.f:
                v = self.f[key]
                if any(c in v for c in "*?["):
                    add(
                        f"{col} LIKE {{}}",
                        v.replace("%", r"\%").replace("_", r"\_").replace("*", "%").replace("?", "_"),
                    )
                else:
                    add(f"{col} = {{}}", v)
        for key, col in (("profile", "profile"), ("status", "status"), ("call_id", "call_id"), ("source", "source")):
            if key in self.f:
                add(f"{col} = {{}}", self.f[key])
        if "actor" in self.f:
            add("actor_id = {}", self.f["actor"])
        if "since" in self.f:
            add("time >= {}", self.f["since"])
        if "until" in self.f:
            add("time < {}", self.f["until"])
        if "q" in self.f:
            add("data::text ILIKE {}", "%" + self.f["q"].replace("%", r"\%") + "%")
        return where, args

    def match(self, ev: dict[str, Any]) -> bool:
        refs = ev.get("refs") or {}
        checks = {
            "type": ev.get("type"),
            "tool": refs.get("tool"),
            "connector": refs.get("connector"),
            "profile": refs.get("profile"),
            "status": ev.get("status"),
            "call_id": refs.get("call_id"),
            "source": ev.get("source"),
            "actor": (ev.get("actor") or {}).get("id"),
        }
        for k, v in checks.items():
            if k in self.f and not fnmatch.fnmatchcase(v or "", self.f[k]):
                return False
        return not ("q" in self.f and self.f["q"].lower() not in json.dumps(ev.get("data")).lower())


class Tail:
    """Fan-out of freshly committed events to live-tail subscribers (bounded queues)."""

    def __init__(self) -> None:
        self.subs: set[asyncio.Queue[dict[str, Any]]] = set()

    def publish(self, events: list[dict[str, Any]]) -> None:
        for q in list(self.subs):
            for ev in events:
                try:
                    q.put_nowait(ev)
                except asyncio.QueueFull:
                    break

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10_000)
        self.subs.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self.subs.discard(q)
