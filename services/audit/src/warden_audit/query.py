"""Reading the log: filters (shared by queries and the live tail), keyset cursors, the
envelope shape of a stored event, and the in-process fan-out the tail listens on."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from warden_audit.errors import BadCursor, BadFilter

log = logging.getLogger(__name__)

__all__ = [
    "ExecutionFilters",
    "Filters",
    "Subscriber",
    "Tail",
    "decode_cursor",
    "encode_cursor",
    "envelope",
    "execution_view",
    "record_envelope",
]


def _like_escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")


def _glob_like(v: str) -> str:
    return _like_escape(v).replace("*", "%").replace("?", "_")


def _is_glob(v: str) -> bool:
    return "*" in v or "?" in v


def _glob_re(v: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in v) + r"\Z", re.S)


class _Where:
    def __init__(self) -> None:
        self.where: list[str] = []
        self.args: list[Any] = []

    def add(self, expr: str, value: Any) -> None:
        self.args.append(value)
        self.where.append(expr.replace("{}", f"${len(self.args)}"))

    def eq_or_glob(self, col: str, value: str | None) -> None:
        if value is None:
            return
        if _is_glob(value):
            self.add(f"{col} LIKE {{}}", _glob_like(value))
        else:
            self.add(f"{col} = {{}}", value)

    def actor(self, actor: str | None) -> None:
        """`id` or `kind:id`."""
        if actor is None:
            return
        kind, ident = _actor_parts(actor)
        if kind:
            self.add("actor_kind = {}", kind)
        self.add("actor_id = {}", ident)


def _actor_parts(actor: str) -> tuple[str | None, str]:
    kind, sep, ident = actor.partition(":")
    if sep and kind in ("agent", "user", "admin", "service", "system"):
        return kind, ident
    return None, actor


@dataclass(frozen=True)
class Filters:
    """Event filters. `type`, `tool`, `connector` take globs (`notion__*`); the rest match
    exactly; `actor` is `id` or `kind:id`; `q` searches the data payload's text."""

    type: str | None = None
    connector: str | None = None
    tool: str | None = None
    profile: str | None = None
    actor: str | None = None
    status: str | None = None
    call_id: str | None = None
    source: str | None = None
    user: str | None = None
    q: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.since and self.until and self.until <= self.since:
            raise BadFilter("`until` must be after `since`")
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, str) and "\x00" in v:
                raise BadFilter(f"`{f.name}` contains a NUL character")

    def sql(self) -> tuple[list[str], list[Any]]:
        w = _Where()
        w.eq_or_glob("type", self.type)
        w.eq_or_glob("tool", self.tool)
        w.eq_or_glob("connector", self.connector)
        for col, v in (
            ("profile", self.profile),
            ("status", self.status),
            ("call_id", self.call_id),
            ("source", self.source),
            ("user_id", self.user),
        ):
            if v is not None:
                w.add(f"{col} = {{}}", v)
        w.actor(self.actor)
        if self.since is not None:
            w.add("time >= {}", self.since)
        if self.until is not None:
            w.add("time < {}", self.until)
        if self.q:
            w.add("data::text ILIKE {}", "%" + _like_escape(self.q) + "%")
        return w.where, w.args

    def matcher(self) -> Any:
        """A predicate on envelope dicts with the same meaning as `sql()` (for the tail)."""
        checks: list[tuple[Any, Any]] = []

        def on(get: Any, value: str | None, glob: bool) -> None:
            if value is None:
                return
            if glob and _is_glob(value):
                rx = _glob_re(value)
                checks.append((get, lambda v, rx=rx: v is not None and rx.match(v) is not None))
            else:
                checks.append((get, lambda v, value=value: v == value))

        on(lambda e: e["type"], self.type, True)
        on(lambda e: e["refs"]["tool"], self.tool, True)
        on(lambda e: e["refs"]["connector"], self.connector, True)
        on(lambda e: e["refs"]["profile"], self.profile, False)
        on(lambda e: e["status"], self.status, False)
        on(lambda e: e["refs"]["call_id"], self.call_id, False)
        on(lambda e: e["source"], self.source, False)
        on(lambda e: e["refs"]["user"], self.user, False)
        if self.actor is not None:
            kind, ident = _actor_parts(self.actor)
            checks.append(
                (lambda e: e["actor"], lambda a: a is not None and a["id"] == ident and kind in (None, a["kind"]))
            )
        q = self.q.lower() if self.q else None
        since, until = self.since, self.until

        def match(ev: dict[str, Any]) -> bool:
            for get, ok in checks:
                if not ok(get(ev)):
                    return False
            if q is not None and q not in json.dumps(ev["data"], ensure_ascii=False).lower():
                return False
            if since is not None or until is not None:
                t = datetime.fromisoformat(ev["time"])
                if (since is not None and t < since) or (until is not None and t >= until):
                    return False
            return True

        return match


@dataclass(frozen=True)
class ExecutionFilters:
    tool: str | None = None
    connector: str | None = None
    profile: str | None = None
    status: str | None = None
    state: str | None = None
    user: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def sql(self) -> tuple[list[str], list[Any]]:
        w = _Where()
        w.eq_or_glob("tool", self.tool)
        w.eq_or_glob("connector", self.connector)
        for col, v in (("profile", self.profile), ("status", self.status), ("state", self.state),
                       ("user_id", self.user)):  # fmt: skip
            if v is not None:
                w.add(f"{col} = {{}}", v)
        w.actor(self.actor)
        if self.since is not None:
            w.add("started_at >= {}", self.since)
        if self.until is not None:
            w.add("started_at < {}", self.until)
        return w.where, w.args


def encode_cursor(t: datetime, key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([t.isoformat(), key]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        t, key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(t), str(key)
    except (ValueError, TypeError):
        raise BadCursor("`cursor` is not one this API gave out; pass `next_cursor` from the previous page") from None


def _envelope(get: Any) -> dict[str, Any]:
    kind = get("actor_kind")
    return {
        "id": get("id"),
        "type": get("type"),
        "source": get("source"),
        "time": get("time").isoformat(),
        "trace_id": get("trace_id"),
        "actor": {"kind": kind, "id": get("actor_id")} if kind else None,
        "refs": {
            "connector": get("connector"),
            "tool": get("tool"),
            "profile": get("profile"),
            "call_id": get("call_id"),
            "user": get("user_id"),
        },
        "status": get("status"),
        "latency_ms": get("latency_ms"),
        "data": get("data"),
        "seq": get("seq"),
    }


def envelope(p: Any) -> dict[str, Any]:
    """The stored event, from an object with the column attributes."""
    return _envelope(lambda k: getattr(p, k))


def record_envelope(r: Mapping[str, Any]) -> dict[str, Any]:
    return _envelope(r.__getitem__)


def execution_view(r: Mapping[str, Any]) -> dict[str, Any]:
    def iso(v: datetime | None) -> str | None:
        return v.isoformat() if v else None

    return {
        "call_id": r["call_id"],
        "tool": r["tool"],
        "connector": r["connector"],
        "profile": r["profile"],
        "user": r["user_id"],
        "actor": {"kind": r["actor_kind"], "id": r["actor_id"]} if r["actor_kind"] else None,
        "trace_id": r["trace_id"],
        "state": r["state"],
        "status": r["status"],
        "started_at": iso(r["started_at"]),
        "requested_at": iso(r["requested_at"]),
        "decided_at": iso(r["decided_at"]),
        "finished_at": iso(r["finished_at"]),
        "latency_ms": r["latency_ms"],
        "approver": r["approver"],
        "arguments": r["arguments"],
        "result": r["result"],
        "error": r["error"],
        "event_count": r["event_count"],
    }


class Subscriber:
    """One tail listener: a bounded queue; when it overflows, the listener is told how many
    events it missed instead of the ingest loop waiting for it."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=size)
        self.missed = 0

    def offer(self, ev: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(ev)
        except asyncio.QueueFull:
            self.missed += 1


class Tail:
    """Fan-out of committed events to live-tail listeners.

    It follows the lanes in Postgres rather than this replica's own ingest, with a cursor per
    lane: within a lane, seq order is commit order (a batch holds the lane's head from
    numbering its rows until it commits), so reading each lane past its own cursor misses
    nothing even when lanes commit out of seq order, and shows every replica's events to
    every replica's listeners. A local commit wakes it at once; other replicas' commits are
    seen within `poll_s`. It runs only while someone listens."""

    def __init__(self, store: Any, buffer: int = 10_000, poll_s: float = 0.25, page: int = 1000) -> None:
        self.store = store
        self.buffer = buffer
        self.poll_s = poll_s
        self.page = page
        self.subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._starting = asyncio.Lock()

    def nudge(self) -> None:
        """Something was committed here: look now."""
        if self._task is not None:
            self._wake.set()

    def publish(self, events: list[dict[str, Any]]) -> None:
        for sub in list(self.subscribers):
            for ev in events:
                sub.offer(ev)

    async def subscribe(self) -> Subscriber:
        """A listener for what is committed from now on (the head is read before this
        returns, so nothing committed after it is missed)."""
        sub = Subscriber(self.buffer)
        async with self._starting:
            if self._task is None or self._task.done():
                last = await self.store.head_seq()  # lane -> seq of its last row
                self._task = asyncio.create_task(self._follow(last), name="audit-tail")
            self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        if not self.subscribers and self._task is not None:
            self._task.cancel()
            self._task = None

    async def close(self) -> None:
        self.subscribers.clear()
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _follow(self, last: dict[int, int]) -> None:
        while True:
            try:
                rows = await self.store.events_after_seq(last, self.page)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - Postgres away: listeners wait, the tail goes on after
                log.warning("audit: tail cannot read the store (%s); retrying", type(e).__name__)
                rows = []
            if rows:
                per_lane: dict[int, int] = {}
                for r in rows:
                    lane = r["lane"]
                    per_lane[lane] = per_lane.get(lane, 0) + 1
                    if r["seq"] > last[lane]:
                        last[lane] = r["seq"]
                full = any(n == self.page for n in per_lane.values())
                self.publish([record_envelope(r) for r in rows])
                if full:
                    continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_s)
